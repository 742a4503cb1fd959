"""Python's cyclic garbage collector paused while a batch is handled.

A batch of thousands of plate reads or device messages makes hundreds of thousands of
small containers (parsed JSON, validated values, rows) that all live until the batch is
written, and none of which form reference cycles: reference counting frees them when the
batch ends. With the collector on, they push it through hundreds of young-generation
passes and several full ones per batch — each full one walking everything the process
holds (the device directory, the watch-list caches) — which cost as much as a large part
of the batch's own work. So :func:`paused` turns it off for the batch (counted across
threads: it stays off while any batch is being handled) and back on after; anything
cyclic made meanwhile, in any thread, is collected then.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_holders = 0
_was_enabled = False


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """The collector off inside, as it was before once every holder has left."""
    global _holders, _was_enabled
    with _lock:
        if _holders == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0 and _was_enabled:
                gc.enable()
