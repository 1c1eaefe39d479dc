"""Register the partners room on the event path (imported through `habitue.rooms`).

Issued and redeemed points are recorded by an `after_record` hook: it runs once the event's
row is written (movements refer to it) and is told the event's `source`, which names the
partner. Refunds reverse them through `after_refund`.
"""

from __future__ import annotations

from habitue.events import hooks
from habitue.partners import service as partners_service

if partners_service.on_event_recorded not in hooks.after_record:
    hooks.after_record.append(partners_service.on_event_recorded)
if partners_service.on_refund not in hooks.after_refund:
    hooks.after_refund.append(partners_service.on_refund)
