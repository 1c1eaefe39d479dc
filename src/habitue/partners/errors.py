"""Errors of the partners room."""

from __future__ import annotations

from habitue.errors import Conflict, NotFound


class PartnerNotFound(NotFound):
    type = "partner-not-found"
    title = "Partner not found"


class PartnerExists(Conflict):
    type = "partner-exists"
    title = "Partner exists"
