"""Import every room that hooks into the event path, once, before serving or importing."""

from __future__ import annotations

import importlib

# Each room built on the foundation adds its hook module here.
ROOM_HOOKS: tuple[str, ...] = (
    "habitue.rewards.hooks",
    "habitue.tiers.hooks",
    "habitue.clubs.hooks",
    "habitue.rules.hooks",
    "habitue.analytics.hooks",
    "habitue.partners.hooks",
)

_loaded = False


def load() -> None:
    """Import the rooms' hook modules so that they register themselves."""
    global _loaded
    if _loaded:
        return
    for name in ROOM_HOOKS:
        importlib.import_module(name)
    _loaded = True
