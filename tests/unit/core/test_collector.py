"""Batches (device messages, plate reads) pause Python's cyclic garbage collector while
they are handled (``anwang.core.collector``), and leave it as they found it — whatever
other threads do meanwhile."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from anwang.core import collector


@pytest.fixture
def collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


def test_paused_during_a_batch_and_resumed_after(collector_on: None) -> None:
    with collector.paused():
        assert not gc.isenabled()
        with collector.paused():  # another batch at once (HTTP and MQTT)
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_resumed_after_a_batch_that_failed(collector_on: None) -> None:
    with pytest.raises(RuntimeError), collector.paused():
        raise RuntimeError("the database went away")
    assert gc.isenabled()


def test_left_off_when_it_was_off() -> None:
    was = gc.isenabled()
    gc.disable()
    try:
        with collector.paused():
            pass
        assert not gc.isenabled()
    finally:
        if was:
            gc.enable()


def test_overlapping_batches_in_threads_resume_it_once_all_are_done(
        collector_on: None) -> None:
    inside, release = threading.Barrier(3), threading.Event()

    def batch() -> None:
        with collector.paused():
            inside.wait(5)
            release.wait(5)

    threads = [threading.Thread(target=batch) for _ in range(2)]
    for t in threads:
        t.start()
    inside.wait(5)
    assert not gc.isenabled()
    release.set()
    for t in threads:
        t.join(5)
    assert gc.isenabled()
