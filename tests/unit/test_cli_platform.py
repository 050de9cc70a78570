"""How `funnel` finds the platform `funnel dev` started, and refuses to guess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from funnel_cli.platform import (
    STATE_FILE,
    PlatformNotFound,
    PlatformState,
    adopt_running_platform,
    read_state,
    state_path,
)
from funnel_tools.embedded import wait_until

DATABASE = "FUNNEL_HANDOFF_DATABASE_URL"
OURS = "postgresql://handoff@127.0.0.1:25432/funnel"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (DATABASE, "FUNNEL_DEV_DATA_DIR", "FUNNEL_INTAKE_URL"):
        # setenv first: delenv of an unset name records nothing to undo, and what the
        # tests adopt would outlive them.
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def _running(data_dir: Path, pid: int | None = None) -> PlatformState:
    data_dir.mkdir(parents=True, exist_ok=True)
    state = PlatformState(
        pid=pid or os.getpid(),
        env={DATABASE: OURS, "FUNNEL_INTAKE_URL": "http://127.0.0.1:28001"},
        urls={"lead-intake": "http://127.0.0.1:28001"},
    )
    state.write(data_dir)
    return state


def test_the_state_file_round_trips_and_only_its_owner_reads_it(tmp_path: Path) -> None:
    state = _running(tmp_path / ".funnel")

    path = tmp_path / ".funnel" / STATE_FILE
    again = read_state(path)

    assert again is not None
    assert (again.pid, again.env, again.urls) == (state.pid, state.env, state.urls)
    assert path.stat().st_mode & 0o077 == 0


def test_found_from_any_folder_of_the_checkout(tmp_path: Path) -> None:
    (tmp_path / ".funnel").mkdir()
    deep = tmp_path / "services" / "handoff"
    deep.mkdir(parents=True)

    assert state_path(deep) == tmp_path / ".funnel" / STATE_FILE


def test_the_data_dir_setting_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUNNEL_DEV_DATA_DIR", str(tmp_path / "elsewhere"))

    assert state_path(tmp_path) == tmp_path / "elsewhere" / STATE_FILE


def test_a_running_platforms_settings_fill_what_the_environment_leaves_unset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)  # funnel"])
    cmdline = Path(f"/proc/{sleeper.pid}/cmdline")
    wait_until(lambda: b"funnel" in cmdline.read_bytes(), timeout=10, what="the sleeper's exec")
    try:
        _running(tmp_path / ".funnel", pid=sleeper.pid)
        monkeypatch.setenv("FUNNEL_INTAKE_URL", "http://set-by-hand:1")

        adopt_running_platform((DATABASE,), cwd=tmp_path)
    finally:
        sleeper.kill()
        sleeper.wait()

    assert os.environ[DATABASE] == OURS
    assert os.environ["FUNNEL_INTAKE_URL"] == "http://set-by-hand:1"


def test_a_stopped_platform_is_not_used_and_the_command_refuses(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    _running(tmp_path / ".funnel", pid=gone.pid)

    with pytest.raises(PlatformNotFound, match="has stopped") as refused:
        adopt_running_platform((DATABASE,), cwd=tmp_path)

    assert DATABASE not in os.environ
    assert DATABASE in str(refused.value)


def test_without_a_platform_or_a_setting_a_command_refuses_rather_than_guess(
    tmp_path: Path,
) -> None:
    with pytest.raises(PlatformNotFound, match="no running `funnel dev` found") as refused:
        adopt_running_platform((DATABASE,), cwd=tmp_path)

    assert "make run" in str(refused.value)


def test_a_setting_given_by_hand_needs_no_platform(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DATABASE, "postgresql://handoff@db.internal/funnel")

    adopt_running_platform((DATABASE,), cwd=tmp_path)

    assert os.environ[DATABASE] == "postgresql://handoff@db.internal/funnel"
