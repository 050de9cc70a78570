"""When the review pack is due: a weekday and time on the reporting zone's wall clock
(so its UTC instant moves with daylight saving), the weeks a worker schedules after
being down, and what counts as late."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from funnel_common.periods import BadWeek, Week, parse_week, week_of_instant
from metrics.review import Schedule, is_late, weeks_to_schedule

MONDAY_8_BERLIN = Schedule(weekday=1, clock=time(8, 0), timezone="Europe/Berlin")


def test_the_pack_is_due_at_the_wall_clock_time_of_the_reporting_zone() -> None:
    # Summer (UTC+2) and winter (UTC+1): the same 08:00 in Berlin.
    assert MONDAY_8_BERLIN.due_at(Week(2026, 27)) == datetime(2026, 6, 29, 6, 0, tzinfo=UTC)
    assert MONDAY_8_BERLIN.due_at(Week(2026, 49)) == datetime(2026, 11, 30, 7, 0, tzinfo=UTC)
    friday = Schedule(weekday=5, clock=time(16, 30), timezone="America/New_York")
    assert friday.due_at(Week(2026, 49)) == datetime(2026, 12, 4, 21, 30, tzinfo=UTC)


def test_the_next_pack_is_this_weeks_until_its_time_then_next_weeks() -> None:
    due = datetime(2026, 11, 30, 7, 0, tzinfo=UTC)

    assert MONDAY_8_BERLIN.next_due(due - timedelta(seconds=1)) == (Week(2026, 49), due)
    assert MONDAY_8_BERLIN.next_due(due) == (Week(2026, 50), due + timedelta(weeks=1))


def test_a_new_installation_schedules_only_the_next_pack() -> None:
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)  # a Wednesday

    assert weeks_to_schedule(None, now, MONDAY_8_BERLIN) == [
        (Week(2026, 50), datetime(2026, 12, 7, 7, 0, tzinfo=UTC))
    ]


def test_after_a_worker_was_down_every_week_since_the_last_row_is_scheduled() -> None:
    now = datetime(2026, 12, 16, 12, 0, tzinfo=UTC)  # W51, its Monday past

    weeks = [week for week, _ in weeks_to_schedule(Week(2026, 48), now, MONDAY_8_BERLIN)]

    # W49 to W51 were due while it was down (found due at once); W52 is the next.
    assert weeks == [Week(2026, 49), Week(2026, 50), Week(2026, 51), Week(2026, 52)]
    assert weeks_to_schedule(Week(2026, 52), now, MONDAY_8_BERLIN) == []


def test_a_pack_is_late_only_past_the_grace() -> None:
    due = datetime(2026, 11, 30, 7, 0, tzinfo=UTC)
    grace = timedelta(minutes=60)

    assert not is_late(due, due + grace, grace)
    assert is_late(due, due + grace + timedelta(seconds=1), grace)


def test_iso_weeks_cross_years_and_only_existing_weeks_parse() -> None:
    assert week_of_instant(datetime(2026, 12, 31, 23, 30, tzinfo=UTC), "UTC") == Week(2026, 53)
    assert week_of_instant(datetime(2026, 12, 31, 23, 30, tzinfo=UTC), "Europe/Berlin") == Week(
        2026, 53
    )
    assert week_of_instant(datetime(2027, 1, 4, 0, 30, tzinfo=UTC), "Europe/Berlin") == Week(
        2027, 1
    )
    assert Week(2026, 53).shifted(1) == Week(2027, 1)
    assert parse_week("2026-W53") == Week(2026, 53)
    for text in ("2027-W53", "2026-W00", "2026-w01", "2026-W1"):
        with pytest.raises(BadWeek):
            parse_week(text)
