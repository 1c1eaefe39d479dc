"""Public identifiers that are not guessable sequences (UUIDv7)."""

from __future__ import annotations

import uuid6


def new_id() -> str:
    """A time-ordered UUIDv7 as a string."""
    return str(uuid6.uuid7())
