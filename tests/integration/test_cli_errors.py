"""`funnel` as an operator meets it: a failure they can fix is one line and exit 1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from funnel_tools.embedded import free_port

FUNNEL = str(Path(sys.executable).with_name("funnel"))


def _funnel(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FUNNEL_")}
    return subprocess.run(
        [FUNNEL, *args], cwd=cwd, env={**clean, **env}, capture_output=True, text=True, timeout=60
    )


def _one_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("funnel: ")
    return line


@pytest.mark.parametrize(
    "command",
    [("token", "create", "--role", "admin", "--subject", "alice"), ("migrate", "handoff"),
     ("replay", "--no-switch"), ("seed", "--leads", "1")],
)  # fmt: skip
def test_without_a_running_platform_or_a_setting_commands_refuse_to_guess(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    line = _one_line(_funnel(*command, cwd=tmp_path))

    assert "no running `funnel dev` found" in line
    assert "make run" in line


def test_a_database_that_is_not_there_is_named_without_its_password(tmp_path: Path) -> None:
    port = free_port()
    url = f"postgresql://handoff:hunter22@127.0.0.1:{port}/funnel"

    line = _one_line(_funnel("token", "list", cwd=tmp_path, FUNNEL_HANDOFF_DATABASE_URL=url))

    assert f"cannot reach PostgreSQL at 127.0.0.1:{port} as handoff" in line
    assert "hunter22" not in line


def test_a_placeholder_secret_in_production_is_refused_before_anything_runs(
    database_url: str, tmp_path: Path
) -> None:
    line = _one_line(
        _funnel(
            "migrate",
            "handoff",
            cwd=tmp_path,
            FUNNEL_ENVIRONMENT="production",
            FUNNEL_HANDOFF_DATABASE_URL=database_url,
            FUNNEL_AUTH_SECRET="dev-auth-secret-change-me",
        )
    )

    assert "invalid settings" in line
    assert "FUNNEL_AUTH_SECRET" in line
    assert "dev-auth-secret" not in line
