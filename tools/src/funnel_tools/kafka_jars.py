"""The pinned Apache Kafka jars: fetched once by Maven, checked against their checksums.

``tools/kafka/pom.xml`` names one Kafka version and its logging backend;
``ensure_jars`` copies their jars from Maven Central (through ``~/.m2``) into
``.tools/kafka/lib`` on first use and refuses a set that differs from
``tools/kafka/jars.sha256``; ``pin_jars`` rewrites that file after a version change.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path

POM = Path("tools/kafka/pom.xml")
CHECKSUMS = Path("tools/kafka/jars.sha256")
INSTALL_DIR = Path(".tools/kafka")
MINIMUM_JAVA = 17


class KafkaToolsMissing(RuntimeError):
    """Java 17+ or Maven is not installed: Apache Kafka cannot run on this machine."""


class KafkaJarsMismatch(RuntimeError):
    """The downloaded jars differ from the checked-in checksums."""


def find_java() -> str:
    """The ``java`` to run (``$JAVA_HOME`` first), checked to be Java 17 or newer."""
    return _java_runtime()[0]


def java_version_banner() -> str:
    """What ``java -version`` printed: names the exact JDK build."""
    return _java_runtime()[1]


@cache
def _java_runtime() -> tuple[str, str]:
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if java is None or not Path(java).exists():
        raise KafkaToolsMissing("java is not installed (Apache Kafka 4 needs Java 17+)")
    banner = subprocess.run(
        [java, "-version"], capture_output=True, text=True, check=False, timeout=30
    ).stderr
    found = re.search(r'version "(\d+)(?:\.(\d+))?', banner)
    major = int(found.group(1)) if found else 0
    if major == 1 and found and found.group(2):  # "1.8.0_392" is Java 8
        major = int(found.group(2))
    if major < MINIMUM_JAVA:
        raise KafkaToolsMissing(
            f"{java} is Java {major or '?'}; Apache Kafka 4 needs Java {MINIMUM_JAVA}+"
        )
    return java, banner


def read_checksums(path: Path) -> dict[str, str]:
    """``{jar name: sha256}`` from a ``sha256sum``-format file."""
    pinned: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            digest, name = line.split(maxsplit=1)
            pinned[name.lstrip("*")] = digest
    return pinned


def jar_checksums(lib_dir: Path) -> dict[str, str]:
    """``{jar name: sha256}`` of the jars in ``lib_dir``."""
    return {
        jar.name: hashlib.sha256(jar.read_bytes()).hexdigest()
        for jar in sorted(lib_dir.glob("*.jar"))
    }


def verify_jars(lib_dir: Path, pinned: dict[str, str]) -> None:
    """Raise ``KafkaJarsMismatch`` naming every jar that is missing, extra or changed."""
    actual = jar_checksums(lib_dir)
    problems = [f"{name}: missing" for name in sorted(pinned.keys() - actual.keys())]
    problems += [f"{name}: not pinned" for name in sorted(actual.keys() - pinned.keys())]
    problems += [
        f"{name}: sha256 {actual[name]}, pinned {pinned[name]}"
        for name in sorted(pinned.keys() & actual.keys())
        if actual[name] != pinned[name]
    ]
    if problems:
        raise KafkaJarsMismatch(
            f"the Apache Kafka jars differ from {CHECKSUMS}: " + "; ".join(problems)
        )


def classpath(lib_dir: Path) -> list[Path]:
    """The jars in a fixed order (a class-data archive is used only by a JVM whose class
    path is the one it was dumped with, so never ``lib/*``)."""
    return sorted(lib_dir.glob("*.jar"))


def _maven_copy(repo_root: Path, target: Path) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaToolsMissing("mvn is not installed (it fetches the Apache Kafka jars)")
    command = [
        mvn, "-q", "-B", "--strict-checksums", "-f", str(repo_root / POM),
        "dependency:copy-dependencies", f"-DoutputDirectory={target}",
    ]  # fmt: skip
    # Offline first: a machine whose ~/.m2 already holds the jars needs no network.
    for offline in (["-o"], []):
        result = subprocess.run(
            [*command, *offline], capture_output=True, text=True, check=False, timeout=900
        )
        if result.returncode == 0:
            return
    output = (result.stdout + result.stderr).strip().splitlines()[-15:]
    raise RuntimeError("mvn could not fetch the Apache Kafka jars:\n" + "\n".join(output))


def ensure_jars(repo_root: Path) -> Path:
    """The directory of the pinned broker jars, fetched by Maven on first use.

    A stamp keyed on the pom and the checksum file makes later calls free; a fetch whose
    jars differ from the checksums raises ``KafkaJarsMismatch`` and installs nothing.
    Raises ``KafkaToolsMissing`` when Java 17+ (or, for a fetch, Maven) is absent.
    """
    find_java()
    repo_root = repo_root.resolve()
    pom, checksums = repo_root / POM, repo_root / CHECKSUMS
    install_dir = repo_root / INSTALL_DIR
    lib_dir, stamp = install_dir / "lib", install_dir / "installed.stamp"
    key = hashlib.sha256(pom.read_bytes() + checksums.read_bytes()).hexdigest()
    install_dir.mkdir(parents=True, exist_ok=True)
    # Two test sessions from one checkout may arrive here together.
    with open(install_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (stamp.exists() and stamp.read_text().strip() == key and lib_dir.is_dir()):
            with tempfile.TemporaryDirectory(dir=install_dir, prefix="fetch-") as scratch:
                fetched = Path(scratch) / "lib"
                _maven_copy(repo_root, fetched)
                verify_jars(fetched, read_checksums(checksums))
                shutil.rmtree(lib_dir, ignore_errors=True)
                fetched.rename(lib_dir)
            stamp.write_text(key + "\n")
    return lib_dir


def pin_jars(repo_root: Path) -> Path:
    """Fetch the pom's jars afresh and write their checksums to ``tools/kafka/jars.sha256``."""
    repo_root = repo_root.resolve()
    with tempfile.TemporaryDirectory(prefix="kafka-pin-") as scratch:
        fetched = Path(scratch) / "lib"
        _maven_copy(repo_root, fetched)
        lines = [f"{digest}  {name}" for name, digest in jar_checksums(fetched).items()]
    target = repo_root / CHECKSUMS
    target.write_text("\n".join(lines) + "\n")
    return target
