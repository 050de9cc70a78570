from __future__ import annotations

import pytest

from funnel_common.retry import Backoff


def test_delays_double_up_to_the_cap_with_half_of_each_random() -> None:
    backoff = Backoff(first=1.0, cap=8.0)

    for failures, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 8.0), (30, 8.0)]:
        delays = [backoff.delay(failures) for _ in range(200)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert len(set(delays)) > 100  # jittered: replicas do not retry in lockstep


def test_reset_after_a_success_starts_from_the_first_delay() -> None:
    backoff = Backoff(first=0.1, cap=5.0)
    for _ in range(6):
        backoff.next_delay()

    backoff.reset()

    assert backoff.next_delay() <= 0.1


def test_a_zero_first_delay_never_waits() -> None:
    assert Backoff(first=0.0, cap=0.0).delay(7) == 0.0


def test_a_cap_below_the_first_delay_is_refused() -> None:
    with pytest.raises(ValueError, match="first <= cap"):
        Backoff(first=2.0, cap=1.0)
