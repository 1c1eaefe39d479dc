"""Every table, imported once so that metadata and migrations see the whole schema."""

from habitue.db import Base
from habitue.events.models import Event, EventLine, IdempotencyRecord
from habitue.ledger.models import Account, LedgerTransaction, Lot, Posting
from habitue.members.models import Card, Member
from habitue.messaging.models import OutboxEvent
from habitue.programs.models import ApiKey, Program

__all__ = [
    "Account",
    "ApiKey",
    "Base",
    "Card",
    "Event",
    "EventLine",
    "IdempotencyRecord",
    "LedgerTransaction",
    "Lot",
    "Member",
    "OutboxEvent",
    "Posting",
    "Program",
]
