"""Ledger errors."""

from habitue.errors import Conflict


class InsufficientPoints(Conflict):
    type = "insufficient-points"
    title = "Insufficient points"


class BalanceLimit(Conflict):
    """A movement that would carry a balance past ±`habitue.bounds.MAX_BALANCE`."""

    type = "balance-limit"
    title = "Balance limit reached"


class MovementLimit(Conflict):
    """An event that would earn more than `habitue.bounds.MAX_POINTS` points at once."""

    type = "movement-limit"
    title = "Movement limit reached"
