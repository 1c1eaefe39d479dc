"""Public identifiers that are not guessable sequences (UUIDv7)."""

from __future__ import annotations

import uuid_utils


def new_id() -> str:
    """A time-ordered UUIDv7 as a string (uuid-utils: about 15 times faster than uuid6)."""
    return str(uuid_utils.uuid7())
