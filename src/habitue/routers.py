"""Routers of the domain rooms beyond the foundation; each room adds its own line here."""

from __future__ import annotations

from typing import Any


def extra_routers() -> list[Any]:
    routers: list[Any] = []
    return routers
