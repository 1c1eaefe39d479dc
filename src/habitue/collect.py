"""Fewer cyclic garbage collections while a long computation allocates millions of objects.

Python's cyclic collector runs a young-generation pass every 700 net allocations and, with
them, older passes that walk every object still alive. A backtest keeps one entry per
purchase (for its refunds), per member and per memoised basket line alive while it
allocates a few dozen short-lived objects per purchase: with the default thresholds a
replay of a file where every line has its own price spent about a fifth of its CPU in the
collector, which found nothing to free (its objects hold no cycles). `fewer_collections`
raises the young generation's threshold while it lasts (nested and concurrent uses share
one raise, and the last to leave restores the thresholds); collection still happens, so
memory held by any cycle is still given back.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

YOUNG_THRESHOLD = 100_000
"""Net allocations between young-generation collections while raised (Python's: 700)."""

_lock = threading.Lock()
_users = 0
_saved: tuple[int, int, int] | None = None


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Raise the young generation's collection threshold for the block's duration."""
    global _users, _saved
    with _lock:
        if _users == 0:
            _saved = gc.get_threshold()
            gc.set_threshold(max(_saved[0], YOUNG_THRESHOLD), _saved[1], _saved[2])
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0 and _saved is not None:
                gc.set_threshold(*_saved)
                _saved = None
