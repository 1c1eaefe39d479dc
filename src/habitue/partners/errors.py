"""Errors of the partners room."""

from __future__ import annotations

from habitue.errors import Conflict, Forbidden, NotFound


class NoSharingConsent(Forbidden):
    """A partner key asked for a member who has not consented to sharing with partners."""

    type = "no-sharing-consent"
    title = "The member does not share their data with partners"


class PartnerNotFound(NotFound):
    type = "partner-not-found"
    title = "Partner not found"


class PartnerExists(Conflict):
    type = "partner-exists"
    title = "Partner exists"
