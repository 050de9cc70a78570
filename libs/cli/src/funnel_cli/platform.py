"""How ``funnel`` finds the platform ``funnel dev`` started, whatever ports it chose.

``funnel dev`` writes ``<data dir>/platform.json`` (the data dir is
``FUNNEL_DEV_DATA_DIR``, by default ``.funnel``) once every process is ready, and
removes it when it stops. It holds the settings the other commands need: each service's
database URL (its own role), the broker, the services' URLs. A command that talks to the
platform adopts those that its environment does not set; a variable set by hand always
wins. Without either, a command that writes to PostgreSQL refuses rather than guess:
the settings' default (127.0.0.1:15432) may be some other PostgreSQL.

Looked for in ``FUNNEL_DEV_DATA_DIR``, else in ``.funnel`` of the current directory or
the nearest parent that has one (so ``funnel`` works from anywhere in a checkout).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

STATE_FILE = "platform.json"
DEFAULT_DATA_DIR = ".funnel"
_VERSION = 1


@dataclass(frozen=True)
class PlatformState:
    """What a running ``funnel dev`` tells the other commands."""

    pid: int
    env: dict[str, str]
    urls: dict[str, str]
    started_at: str = ""

    def write(self, data_dir: Path) -> Path:
        """Write the state file atomically (readable by this user only: it names the
        database URLs)."""
        path = data_dir / STATE_FILE
        partial = path.with_suffix(".json.partial")
        body = {"version": _VERSION, **self.__dict__}
        body["started_at"] = body["started_at"] or datetime.now(UTC).isoformat()
        partial.write_text(json.dumps(body, indent=2) + "\n")
        partial.chmod(0o600)
        partial.replace(path)
        return path

    @property
    def running(self) -> bool:
        """Whether the ``funnel dev`` that wrote this is still running."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        cmdline = Path(f"/proc/{self.pid}/cmdline")
        if cmdline.exists():  # a pid reused by another program since
            return b"funnel" in cmdline.read_bytes()
        return True


def state_path(cwd: Path | None = None) -> Path:
    """Where the state file is, or would be."""
    configured = os.environ.get("FUNNEL_DEV_DATA_DIR")
    if configured:
        return Path(configured) / STATE_FILE
    here = (cwd or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        if (directory / DEFAULT_DATA_DIR).is_dir():
            return directory / DEFAULT_DATA_DIR / STATE_FILE
    return here / DEFAULT_DATA_DIR / STATE_FILE


def read_state(path: Path) -> PlatformState | None:
    """The state in ``path``, or None when there is none (or it is unreadable)."""
    try:
        body: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if body.get("version") != _VERSION:
        return None
    return PlatformState(
        pid=int(body["pid"]),
        env=dict(body["env"]),
        urls=dict(body["urls"]),
        started_at=str(body.get("started_at", "")),
    )


class PlatformNotFound(Exception):
    """A command needs settings that neither the environment nor a running `funnel dev`
    gives."""


def adopt_running_platform(needs: tuple[str, ...], *, cwd: Path | None = None) -> None:
    """Fill the unset variables from a running ``funnel dev``; refuse if ``needs`` are
    still unset afterwards."""
    path = state_path(cwd)
    state = read_state(path)
    if state is not None and state.running:
        for name, value in state.env.items():
            os.environ.setdefault(name, value)
    missing = [name for name in needs if not os.environ.get(name)]
    if not missing:
        return
    found = (
        f"the `funnel dev` that wrote {path} has stopped"
        if state is not None
        else f"no running `funnel dev` found ({path})"
    )
    variables = " and ".join(missing)
    raise PlatformNotFound(
        f"{found} and {variables} {'is' if len(missing) == 1 else 'are'} not set: start the "
        f"platform with `make run`, or set {variables}"
    )
