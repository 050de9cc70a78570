"""Business-time arithmetic: examples that pin the meaning, properties that hold for all."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from handoff.sla import (
    WEEKDAYS,
    BusinessCalendar,
    SlaPolicy,
    Span,
    add_business_time,
    business_time_between,
    deadlines,
    is_working,
    local_to_utc,
)

BERLIN = ZoneInfo("Europe/Berlin")
NINE_TO_FIVE_BERLIN = BusinessCalendar(
    time_zone="Europe/Berlin",
    weekly_hours={day: [Span(start="09:00", end="17:00")] for day in WEEKDAYS[:5]},
    holidays=[date(2026, 12, 25)],
)


def berlin(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN).astimezone(UTC)


def test_time_after_hours_carries_over_to_the_next_working_morning() -> None:
    friday_late = berlin(2026, 11, 20, 16, 50)

    due = add_business_time(NINE_TO_FIVE_BERLIN, friday_late, timedelta(minutes=15))

    assert due == berlin(2026, 11, 23, 9, 5)


def test_holidays_are_skipped() -> None:
    christmas_eve_late = berlin(2026, 12, 24, 16, 0)

    due = add_business_time(NINE_TO_FIVE_BERLIN, christmas_eve_late, timedelta(hours=2))

    assert due == berlin(2026, 12, 28, 10, 0)


def test_a_working_day_across_a_dst_change_counts_wall_clock_hours() -> None:
    always = BusinessCalendar(
        time_zone="Europe/Berlin",
        weekly_hours={day: [Span(start="00:00", end="24:00")] for day in WEEKDAYS},
    )
    spring_forward = (berlin(2026, 3, 29, 0, 0), berlin(2026, 3, 30, 0, 0))
    fall_back = (berlin(2026, 10, 25, 0, 0), berlin(2026, 10, 26, 0, 0))

    assert business_time_between(always, *spring_forward) == timedelta(hours=23)
    assert business_time_between(always, *fall_back) == timedelta(hours=25)


def test_spans_starting_in_the_dst_gap_start_when_the_clock_jumps() -> None:
    night_shift = BusinessCalendar(
        time_zone="Europe/Berlin",
        weekly_hours={"sun": [Span(start="02:30", end="04:00")]},
    )

    due = add_business_time(night_shift, berlin(2026, 3, 29, 0, 0), timedelta(minutes=10))

    # 02:30 does not exist that night; work starts at the jump (03:00 CEST, 01:00 UTC).
    assert due == datetime(2026, 3, 29, 1, 10, tzinfo=UTC)


def test_policy_deadlines_put_at_risk_before_due() -> None:
    policy = SlaPolicy(business_minutes=240, at_risk_percent=75, calendar=NINE_TO_FIVE_BERLIN)

    found = deadlines(policy, berlin(2026, 11, 23, 9, 0))

    assert found.at_risk_at == berlin(2026, 11, 23, 12, 0)
    assert found.due_at == berlin(2026, 11, 23, 13, 0)


def test_calendars_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="start must be before"):
        Span(start="17:00", end="09:00")
    with pytest.raises(ValueError, match="overlap"):
        BusinessCalendar(
            weekly_hours={
                "mon": [Span(start="09:00", end="12:00"), Span(start="11:00", end="13:00")]
            }
        )
    with pytest.raises(ValueError, match="unknown time zone"):
        BusinessCalendar(
            time_zone="Mars/Olympus", weekly_hours={"mon": [Span(start="09:00", end="10:00")]}
        )
    with pytest.raises(ValueError, match="at least one"):
        BusinessCalendar(weekly_hours={"mon": []})


# --- properties ------------------------------------------------------------------------

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]


@st.composite
def spans(draw: st.DrawFn) -> list[Span]:
    cuts = sorted(draw(st.sets(st.integers(0, 48), min_size=2, max_size=6)))
    pairs = list(zip(cuts[::2], cuts[1::2], strict=False))
    return [
        Span(start=f"{a // 2:02d}:{30 * (a % 2):02d}", end=f"{b // 2:02d}:{30 * (b % 2):02d}")
        for a, b in pairs
    ]


@st.composite
def calendars(draw: st.DrawFn) -> BusinessCalendar:
    days = draw(st.lists(st.sampled_from(WEEKDAYS), min_size=1, max_size=7, unique=True))
    hours = {day: draw(spans()) for day in days}
    holidays = draw(
        st.lists(st.dates(date(2026, 1, 1), date(2027, 12, 31)), max_size=20, unique=True)
    )
    return BusinessCalendar(
        time_zone=draw(st.sampled_from(ZONES)), weekly_hours=hours, holidays=holidays
    )


# DST changes in the zones above (EU, US, Lord Howe's half hour): half the instants start
# within days of one, where wall-clock arithmetic goes wrong if it is going to.
DST_CHANGES = [
    datetime(2026, 3, 8, tzinfo=UTC),
    datetime(2026, 3, 29, tzinfo=UTC),
    datetime(2026, 4, 5, tzinfo=UTC),
    datetime(2026, 10, 4, tzinfo=UTC),
    datetime(2026, 10, 25, tzinfo=UTC),
    datetime(2026, 11, 1, tzinfo=UTC),
]
instants = st.one_of(
    st.datetimes(datetime(2026, 1, 1), datetime(2027, 12, 31), timezones=st.just(UTC)),
    st.builds(
        lambda change, minutes: change + timedelta(minutes=minutes),
        st.sampled_from(DST_CHANGES),
        st.integers(-3 * 24 * 60, 24 * 60),
    ),
)
amounts = st.integers(1, 5 * 24 * 3600).map(lambda s: timedelta(seconds=s))


def _in_working_time_by_wall_clock(calendar: BusinessCalendar, instant: datetime) -> bool:
    """An oracle independent of the interval code: read the wall clock and the rules."""
    local = instant.astimezone(calendar.zone)
    if local.date() in calendar.holiday_set:
        return False
    minute = local.hour * 60 + local.minute + local.second / 60
    return any(
        span.start_minute <= minute < span.end_minute
        for span in calendar.weekly_hours.get(WEEKDAYS[local.weekday()], [])
    )


@settings(max_examples=150, deadline=None)
@given(calendars(), instants, amounts)
def test_due_dates_land_inside_working_time(
    calendar: BusinessCalendar, start: datetime, amount: timedelta
) -> None:
    due = add_business_time(calendar, start, amount)

    just_before = due - timedelta(microseconds=1)
    assert due > start
    assert is_working(calendar, just_before)
    assert _in_working_time_by_wall_clock(calendar, just_before)


@settings(max_examples=150, deadline=None)
@given(calendars(), instants, amounts)
def test_adding_then_measuring_gives_back_the_amount(
    calendar: BusinessCalendar, start: datetime, amount: timedelta
) -> None:
    due = add_business_time(calendar, start, amount)

    assert business_time_between(calendar, start, due) == amount


@settings(max_examples=150, deadline=None)
@given(calendars(), instants, instants, amounts, amounts)
def test_adding_time_is_monotonic(
    calendar: BusinessCalendar,
    first: datetime,
    second: datetime,
    small: timedelta,
    large: timedelta,
) -> None:
    early, late = sorted((first, second))
    less, more = sorted((small, large))

    assert add_business_time(calendar, early, less) <= add_business_time(calendar, early, more)
    assert add_business_time(calendar, early, less) <= add_business_time(calendar, late, less)


@pytest.mark.parametrize("zone", ZONES)
def test_wall_clock_to_utc_never_runs_backwards_across_dst(zone: str) -> None:
    """Every minute of the days around each DST change, in order: instants never go back."""
    for change in DST_CHANGES:
        for shift in (-1, 0, 1):
            day = change.date() + timedelta(days=shift)
            instants_of_day = [local_to_utc(day, minute, ZoneInfo(zone)) for minute in range(1441)]

            assert instants_of_day == sorted(instants_of_day), (zone, day)


def test_a_policy_whose_window_can_never_elapse_is_refused_naming_the_calendar() -> None:
    one_hour_on_mondays = {"mon": [{"start": "09:00", "end": "10:00"}]}
    every_monday = [date(2026, 12, 7) + timedelta(weeks=n) for n in range(600)]

    for calendar, minutes in [
        ({"weekly_hours": one_hour_on_mondays, "holidays": every_monday}, 60),
        ({"weekly_hours": one_hour_on_mondays}, 60 * 24 * 365),
    ]:
        with pytest.raises(ValidationError) as refused:
            SlaPolicy.model_validate({"business_minutes": minutes, "calendar": calendar})
        assert [error["loc"] for error in refused.value.errors()] == [("calendar",)]
        assert "can never elapse" in str(refused.value)

    # The same hours with a window they can hold, and a few holidays, are fine.
    policy = SlaPolicy.model_validate(
        {
            "business_minutes": 120,
            "calendar": {"weekly_hours": one_hour_on_mondays, "holidays": every_monday[:5]},
        }
    )
    assert deadlines(policy, datetime(2026, 12, 7, 9, tzinfo=UTC)).due_at == datetime(
        2027, 1, 18, 10, tzinfo=UTC
    )
