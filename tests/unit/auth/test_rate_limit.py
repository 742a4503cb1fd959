"""The sliding-window login limiter."""

from __future__ import annotations

import pytest

from anwang.auth.deps import SlidingWindowLimiter


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_twenty_per_minute_then_wait() -> None:
    clock = Clock()
    limiter = SlidingWindowLimiter(limit=20, window=60.0, clock=clock)
    for i in range(20):
        clock.t += 1
        assert limiter.hit("1.2.3.4") is None, i
    wait = limiter.hit("1.2.3.4")
    assert wait == pytest.approx(60 - 19)  # the first hit (t=1001) leaves at t=1061
    assert limiter.hit("5.6.7.8") is None  # other addresses are not affected
    clock.t = 1061.0
    assert limiter.hit("1.2.3.4") is None  # the window slid past the first hit
    assert limiter.hit("1.2.3.4") is not None


def test_refused_hits_do_not_extend_the_wait() -> None:
    clock = Clock()
    limiter = SlidingWindowLimiter(limit=2, window=10.0, clock=clock)
    assert limiter.hit("k") is None and limiter.hit("k") is None
    for _ in range(50):
        clock.t += 0.1
        assert limiter.hit("k") is not None
    clock.t = 1010.0
    assert limiter.hit("k") is None


def test_memory_is_bounded() -> None:
    clock = Clock()
    limiter = SlidingWindowLimiter(limit=1, window=10.0, clock=clock, max_keys=100)
    for i in range(1000):
        limiter.hit(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter._hits) <= 100
