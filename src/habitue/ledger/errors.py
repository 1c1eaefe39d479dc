"""Ledger errors."""

from habitue.errors import Conflict


class InsufficientPoints(Conflict):
    type = "insufficient-points"
    title = "Insufficient points"
