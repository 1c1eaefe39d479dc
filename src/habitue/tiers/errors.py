"""Errors of the tiers room."""

from __future__ import annotations

from habitue.errors import Conflict, HabitueError, NotFound


class InvalidLadder(HabitueError):
    status = 422
    type = "invalid-tier-ladder"
    title = "Invalid tier ladder"


class NoLadder(NotFound):
    type = "no-tier-ladder"
    title = "No tier ladder"


class UnknownTier(HabitueError):
    status = 422
    type = "unknown-tier"
    title = "Unknown tier"


class LadderInUse(Conflict):
    type = "tier-ladder-in-use"
    title = "Tier ladder in use"


class TierInUse(Conflict):
    type = "tier-in-use"
    title = "Tier in use by rules"
