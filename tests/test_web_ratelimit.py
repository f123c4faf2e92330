"""The web service's rate limiter (``hq.web.security.RateLimiter``): a sliding window."""

from __future__ import annotations

from hq.web.security import RateLimiter


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_burst_across_a_minute_boundary_gets_the_limit_once() -> None:
    """GIVEN 10 a minute WHEN 6 hits come just before a whole minute and 6 just after
    THEN the 11th and 12th are refused (a fixed window let all 12 in); a minute after the
    first hits, as many are let in again as aged out."""
    clock = Clock(119.0)
    limits = RateLimiter(10, 60.0, clock)
    first = [limits.allow("ip") for _ in range(6)]
    clock.now = 121.0
    second = [limits.allow("ip") for _ in range(6)]
    assert first == [True] * 6 and second == [True] * 4 + [False] * 2
    clock.now = 179.5  # the six at 119 are a minute old; the four at 121 are not
    assert [limits.allow("ip") for _ in range(7)] == [True] * 6 + [False]


def test_keys_count_apart_and_any_full_key_refuses() -> None:
    """GIVEN a limit of 2 WHEN one name is tried from two addresses THEN the name's third
    try is refused whatever the address, and another name from the same address is not."""
    limits = RateLimiter(2, 60.0, Clock(0.0))
    assert limits.allow("ip1", "name:a") and limits.allow("ip2", "name:a")
    assert not limits.allow("ip3", "name:a")
    assert limits.allow("ip3", "name:b")


def test_quiet_keys_are_forgotten_and_zero_means_no_limit() -> None:
    """GIVEN hits from 1,000 addresses WHEN a window passes and one more comes THEN only the
    new key is kept; a limit of 0 allows everything."""
    clock = Clock(0.0)
    limits = RateLimiter(3, 60.0, clock)
    for n in range(1000):
        limits.allow(f"ip{n}")
    clock.now = 61.0
    assert limits.allow("late")
    assert list(limits._hits) == ["late"]
    unlimited = RateLimiter(0, 60.0, clock)
    assert all(unlimited.allow("x") for _ in range(100))
