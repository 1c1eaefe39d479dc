"""Small SQL helpers of the rewards room."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy.engine import CursorResult


def affected(result: Any) -> int:
    """Rows changed by an UPDATE (the winner of a conditional update sees 1)."""
    return int(cast(CursorResult[Any], result).rowcount or 0)
