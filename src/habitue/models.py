"""Every table, imported once so that metadata and migrations see the whole schema."""

from habitue.analytics import models as analytics_models  # noqa: F401
from habitue.clubs import models as clubs_models  # noqa: F401
from habitue.db import Base
from habitue.events.models import Event, EventLine, IdempotencyRecord
from habitue.ledger.models import Account, LedgerTransaction, Lot, Posting
from habitue.members.models import Card, Member
from habitue.messaging.models import MessageTemplate, OutboxEvent
from habitue.partners import models as partners_models  # noqa: F401
from habitue.privacy import models as privacy_models  # noqa: F401
from habitue.programs.models import ApiKey, Program
from habitue.promotions import models as promotions_models  # noqa: F401
from habitue.rewards import models as rewards_models  # noqa: F401
from habitue.rules import models as rules_models  # noqa: F401
from habitue.tiers import models as tiers_models  # noqa: F401
from habitue.web.models import MemberCredential, SignInToken, StaffUser, WebSession

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
    "MemberCredential",
    "MessageTemplate",
    "OutboxEvent",
    "Posting",
    "Program",
    "SignInToken",
    "StaffUser",
    "WebSession",
]
