"""The documented `funnel` commands work as written next to `funnel dev` on other ports.

One `funnel dev`, started as a person does in their checkout (its data in `.funnel/`
there) but on free ports, none of them the defaults. Then each command the README and
docs show runs from that checkout with no `FUNNEL_*` variable set: they find this
platform through `.funnel/platform.json`, and act on it (the token works against this
handoff, the leads land in this lead-intake), never on whatever holds the default ports.
The platform's log files are JSON lines, the supervisor's and the broker's too, and
`.funnel/prometheus.yml` scrapes the ports it runs on.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from funnel_tools.dashboards import ROOT
from funnel_tools.dev import DevSettings
from funnel_tools.devplatform import DevPlatform, free_ports, start_dev
from funnel_tools.embedded import wait_until
from tests.conftest import require_system_tool

pytestmark = pytest.mark.e2e

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# What a checkout holds that the commands use (linked, so nothing is installed again).
CHECKOUT = (".venv", ".tools", "Makefile", "pyproject.toml", "uv.lock", "libs", "services",
            "tools", "config")  # fmt: skip


def documented(command: str) -> str:
    """``command``, after checking the manuals show it as written."""
    text = "\n".join(path.read_text() for path in DOCS)
    assert command in text, f"no manual shows `{command}`"
    return command


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("checkout")
    for name in CHECKOUT:
        (root / name).symlink_to(ROOT / name)
    return root


@pytest.fixture(scope="module")
def platform(checkout: Path) -> Iterator[DevPlatform]:
    ports = free_ports()
    defaults = {field.default for field in DevSettings.model_fields.values()}
    assert not set(ports.values()) & defaults
    running = start_dev(checkout / ".funnel", ports, checkout / "dev.out", cwd=checkout)
    yield running
    running.stop()


def run(command: str, checkout: Path) -> subprocess.CompletedProcess[str]:
    """A command as a person types it in the checkout: no FUNNEL_* variable set."""
    # Nor make's own variables: under `make test` a nested make would print its
    # "Entering/Leaving directory" lines around the command's output.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("FUNNEL_") and k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")
    }
    env.pop("VIRTUAL_ENV", None)
    done = subprocess.run(
        command, shell=True, cwd=checkout, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr
    return done


def test_the_platform_tells_the_other_commands_where_it_runs(
    platform: DevPlatform, checkout: Path
) -> None:
    state = json.loads((checkout / ".funnel" / "platform.json").read_text())

    assert state["pid"] == platform.process.pid
    assert state["urls"]["handoff"] == platform.url("handoff", "")
    assert state["env"]["FUNNEL_HANDOFF_DATABASE_URL"] == (
        f"postgresql://handoff@127.0.0.1:{platform.ports['postgres']}/funnel"
    )
    # handoff's email and Slack links point at the handoff this platform serves.
    assert state["env"]["FUNNEL_HANDOFF_PUBLIC_URL"] == platform.url("handoff", "")


def test_help_then_a_token_for_this_platform_that_its_handoff_accepts(
    platform: DevPlatform, checkout: Path
) -> None:
    run(documented(".venv/bin/funnel --help"), checkout)

    # `make funnel` without its `sync` step, which would install the environment again
    # for this temporary checkout's paths.
    made = documented('make funnel ARGS="token create --role admin --subject alice"')
    token = run(made.replace("make ", "make -o sync ", 1), checkout).stdout.strip().splitlines()[-1]
    listed = run(".venv/bin/funnel token list", checkout).stdout

    # Issued into this platform's handoff (and announced to the other services).
    def accepted() -> bool:
        bearer = {"authorization": f"Bearer {token}"}
        return httpx.get(platform.url("handoff", "/v1/handoffs"), headers=bearer).is_success

    wait_until(accepted, timeout=60, what="handoff to accept the new token")
    assert "\talice\tadmin\t" in listed
    assert documented("funnel token list")


def _readme_examples() -> list[tuple[str, list[str]]]:
    """The README's shell examples: each command (continuation lines joined) with the
    comment lines that show its answer."""
    examples: list[tuple[str, list[str]]] = []
    blocks = re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    for block in blocks:
        for chunk in re.split(r"\n\s*\n", block.strip()):
            lines = chunk.splitlines()
            command = [line for line in lines if not line.startswith("#")]
            shown = [line.removeprefix("#").strip() for line in lines if line.startswith("#")]
            examples.append((" ".join(line.rstrip(" \\") for line in command), shown))
    return examples


def _matches(shown: Any, got: Any) -> bool:
    """``got`` is what the manual shows, where "…" stands for what differs each time."""
    if isinstance(shown, dict):
        return (
            isinstance(got, dict)
            and shown.keys() == got.keys()
            and all(_matches(shown[key], got[key]) for key in shown)
        )
    if isinstance(shown, list):
        return isinstance(got, list) and len(shown) == len(got) and all(map(_matches, shown, got))
    if isinstance(shown, str) and "…" in shown:
        head, _, tail = shown.partition("…")
        return isinstance(got, str) and got.startswith(head) and got.endswith(tail)
    return bool(shown == got)


def test_the_readme_examples_answer_as_shown(platform: DevPlatform, checkout: Path) -> None:
    examples = [(command, shown) for command, shown in _readme_examples() if "curl" in command]
    assert len(examples) >= 3, "the README's curl examples were not found"
    for command, shown in examples:
        for service, port in (("intake", 8001), ("handoff", 8002), ("metrics", 8003)):
            command = command.replace(f"127.0.0.1:{port}", f"127.0.0.1:{platform.ports[service]}")
        if shown[0].startswith("{"):  # a JSON answer, maybe followed by a remark
            text = " ".join(shown)
            expected = json.loads(text[: text.rindex("}") + 1])
            answer = json.loads(run(command, checkout).stdout)
            assert _matches(expected, answer), f"{command}\nshown: {expected}\ngot: {answer}"
        elif re.match(r"\d{3} ", shown[0]):  # a status and a JSON problem
            status, media_type = shown[0].split()
            text = " ".join(shown[1:])
            expected = json.loads(text)
            done = run(f"{command} -o /dev/stderr -w '%{{http_code}} %{{content_type}}'", checkout)
            assert done.stdout.split() == [status, media_type], command
            answer = json.loads(done.stderr)
            assert _matches(expected, answer), f"{command}\nshown: {expected}\ngot: {answer}"
        else:  # lines of /metrics: the count arrives once the event went through
            wait_until(
                lambda command=command, shown=shown: (
                    run(command, checkout).stdout.splitlines() == shown
                ),
                timeout=60,
                what=f"`{command}` to print {shown}",
            )


def test_migrate_import_and_replay_act_on_this_platform(
    platform: DevPlatform, checkout: Path
) -> None:
    (checkout / "leads.csv").write_text(
        "email,first_name,company,source\n"
        "grace@example.com,Grace,Navy,webinar\n"
        "alan@example.com,Alan,Bletchley,webinar\n"
    )
    before = platform.captured() or 0

    migrated = run(".venv/bin/funnel migrate handoff", checkout)
    run(".venv/bin/" + documented("funnel import leads leads.csv"), checkout)
    wait_until(lambda: platform.captured() == before + 2, timeout=60, what="the imported leads")
    replayed = run(".venv/bin/funnel replay --no-switch", checkout)

    assert migrated.stdout == "handoff: 0 migration(s) applied\n"
    assert "not switched (--no-switch); the rebuilt schema is dropped" in replayed.stderr
    assert documented("--no-switch")


def test_the_logs_are_json_lines_and_prometheus_follows_the_ports(
    platform: DevPlatform, checkout: Path
) -> None:
    logs = checkout / ".funnel" / "logs"
    files = {path.name for path in logs.glob("*.log")}

    assert {"supervisor.log", "broker.log", "lead-intake.log", "handoff-worker.log"} <= files
    for path in logs.glob("*.log"):
        for line in path.read_text().splitlines():
            entry = json.loads(line)  # every line, uvicorn's and the broker's included
            assert "color_message" not in entry, path.name
    supervisor = [json.loads(line) for line in (logs / "supervisor.log").read_text().splitlines()]
    assert any(entry["message"] == "ready" for entry in supervisor)

    config_path = checkout / ".funnel" / "prometheus.yml"
    config = yaml.safe_load(config_path.read_text())
    targets = {
        (job["job_name"], group["labels"]["component"]): group["targets"]
        for job in config["scrape_configs"]
        for group in job["static_configs"]
    }
    assert targets[("handoff", "worker")] == [f"127.0.0.1:{platform.ports['handoff_worker']}"]
    assert targets[("lead-intake", "web")] == [f"127.0.0.1:{platform.ports['intake']}"]
    promtool = require_system_tool("promtool", "checks the generated scrape config")
    checked = subprocess.run(
        [promtool, "check", "config", str(config_path)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert documented("prometheus --config.file=.funnel/prometheus.yml")
