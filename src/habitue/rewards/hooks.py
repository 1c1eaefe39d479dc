"""Register the rewards room on the event path (imported through `habitue.rooms`)."""

from __future__ import annotations

from habitue.events import hooks
from habitue.members import service as members_service
from habitue.rewards import referrals

if referrals.on_purchase not in hooks.after_event:
    hooks.after_event.append(referrals.on_purchase)
if referrals.on_refund not in hooks.after_refund:
    hooks.after_refund.append(referrals.on_refund)
members_service.event_extras.setdefault(referrals.PENDING, referrals.pending_column)
