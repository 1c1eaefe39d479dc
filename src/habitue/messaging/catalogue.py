"""The webhook event catalogue: one JSON Schema per event type, versioned.

Each schema describes one delivery's body, `{"type", "timestamp", "data"}`; `data` lists the
fields of that event type. Receivers must ignore fields they do not know: new fields may be
added within a version (`additionalProperties` is true); removing or changing a field makes
a new `VERSION`. The schemas are served at `GET /v1/webhook-events/schemas/{type}` (and the
list at `GET /v1/webhook-events/schemas`), and written to `docs/webhooks/schemas/` by
`python -m habitue.messaging.catalogue docs/webhooks/schemas` (a test keeps them equal).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from habitue.messaging.webhooks import CATALOGUE

VERSION = "1"
SCHEMA_BASE = "https://habitue.dev/schemas/webhooks/v1"

_S, _I, _B, _O, _A = "string", "integer", "boolean", "object", "array"
_MEMBER = {"member_id": (_S, "the member's id")}
_SUB = {"subscription_id": (_S, "the club subscription's id")}

FIELDS: dict[str, dict[str, tuple[str | list[str], str]]] = {
    "member.enrolled": {
        **_MEMBER,
        "card_number": (_S, "the member's card number"),
        "external_id": ([_S, "null"], "the member's id in the caller's system"),
        "locale": (_S, "the member's language"),
        "source": (_S, "`import` when enrolled by `habitue import purchases --enrol-missing`"
                   " (no welcome message is sent); absent otherwise"),
    },
    "member.updated": {
        **_MEMBER,
        "fields": (_A, "the names of the fields that changed"),
        "actor": ([_S, "null"], "who changed them"),
    },
    "card.replaced": {
        **_MEMBER,
        "card_number": (_S, "the new card number"),
        "reason": ([_S, "null"], "why"),
    },
    "card.blocked": {**_MEMBER, "card_number": (_S, "the blocked card number")},
    "event.recorded": {
        **_MEMBER,
        "event_id": (_S, "the recorded event's id"),
        "external_id": ([_S, "null"], "the caller's idempotency id"),
        "type": (_S, "purchase, refund or an action type"),
        "total": ([_S, "null"], "the amount as a decimal string"),
    },
    "event.refunded": {
        **_MEMBER,
        "event_id": (_S, "the refund's id"),
        "purchase_id": (_S, "the refunded purchase's id"),
        "amount": ([_S, "null"], "the refunded amount"),
        "points_taken_back": (_I, "points the refund took back"),
        "points_returned": (_I, "points spent on the purchase given back"),
        "shortfall": (_I, "points that could not be taken back"),
    },
    "points.earned": {
        **_MEMBER,
        "points": (_I, "points credited"),
        "event_id": (_S, "the event that earned them"),
        "event_type": (_S, "its type"),
        "pending": (_B, "whether they are pending until the return window closes"),
    },
    "points.spent": {
        **_MEMBER,
        "points": (_I, "points spent"),
        "event_id": ([_S, "null"], "the event they were spent at"),
        "reason": ([_S, "null"], "till, reward…"),
    },
    "points.adjusted": {
        **_MEMBER,
        "points": (_I, "signed points"),
        "reason": ([_S, "null"], "the agent's reason"),
        "actor": ([_S, "null"], "the agent"),
    },
    "points.expired": {**_MEMBER, "points": (_I, "points that expired")},
    "points.expiring": {
        **_MEMBER,
        "points": (_I, "points of the lot that expires"),
        "expires_at": (_S, "when (RFC 3339)"),
    },
    "reward.redeemed": {
        **_MEMBER,
        "redemption_id": (_S, "the redemption's id"),
        "reward": (_S, "the reward's code"),
        "quantity": (_I, "how many"),
        "points": (_I, "points spent"),
        "coupon": ([_S, "null"], "the coupon code"),
    },
    "reward.canceled": {
        **_MEMBER,
        "redemption_id": (_S, "the canceled redemption"),
        "points": (_I, "points given back"),
    },
    "reward.available": {
        **_MEMBER,
        "points": (_I, "the member's available points"),
        "cheapest_cost": (_I, "the cost of the program's cheapest reward"),
    },
    "coupon.redeemed": {
        "code": (_S, "the coupon code"),
        "reward": ([_S, "null"], "its reward's code"),
        "reference": ([_S, "null"], "the till's reference"),
    },
    "referral.rewarded": {
        "referral": (_S, "the referral's id"),
        "referee_points": (_I, "points to the new member"),
        "referrer_points": (_I, "points to the member who referred"),
    },
    "tier.changed": {
        **_MEMBER,
        "from": ([_S, "null"], "the previous tier's code"),
        "to": ([_S, "null"], "the new tier's code"),
        "direction": (_S, "up or down"),
    },
    "tiers.ladder_changed": {
        "metric": (_S, "what the ladder qualifies on"),
        "tiers": (_A, "the tiers"),
    },
    "member.birthday": {**_MEMBER, "date": (_S, "the local date (YYYY-MM-DD)")},
    "club.plan_created": {
        "plan": (_S, "the plan's code"),
        "price": (_S, "its price"),
        "period": (_S, "monthly or yearly"),
    },
    "club.subscribed": {**_SUB, "plan": (_S, "the plan"), "status": (_S, "its status")},
    "club.activated": {**_SUB, "payment_id": ([_S, "null"], "the payment"), "until": (_S, "")},
    "club.renewed": {**_SUB, "payment_id": ([_S, "null"], "the payment"), "until": (_S, "")},
    "club.ended": {**_SUB, "status": (_S, "its status"), "reason": ([_S, "null"], "why")},
    "club.payment_failed": {
        **_SUB,
        "attempt": (_I, "which attempt"),
        "error": ([_S, "null"], "the provider's error"),
    },
    "club.payment_refunded": {**_SUB, "payment_id": (_S, "the refunded payment")},
    "club.voucher_granted": {**_SUB, "points": (_I, "points of the voucher")},
    "partner.created": {"partner": (_S, "the partner's code"), "name": (_S, "its name")},
    "partner.updated": {
        "partner": (_S, "the partner's code"),
        "changed": (_A, "the fields that changed"),
    },
    "message_template.saved": {
        "code": (_S, "the template's code"),
        "channel": (_S, "email, sms or push"),
        "locale": (_S, "its language"),
    },
    "message_template.deleted": {
        "code": (_S, "the template's code"),
        "channel": (_S, "email, sms or push"),
        "locale": (_S, "its language"),
    },
}
"""Event type → the fields of its `data` (JSON type, what it says). Every catalogue type is
here (a test checks it)."""


def schema(type_: str) -> dict[str, Any]:
    """The JSON Schema (2020-12) of a delivery of `type_`; KeyError when not in the
    catalogue."""
    description = CATALOGUE[type_]
    fields = FIELDS.get(type_, {})
    properties = {
        name: {"type": kind, "description": text} if text else {"type": kind}
        for name, (kind, text) in fields.items()
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{SCHEMA_BASE}/{type_}.json",
        "title": type_,
        "description": description,
        "x-version": VERSION,
        "type": "object",
        "required": ["type", "timestamp", "data"],
        "properties": {
            "type": {"const": type_},
            "timestamp": {"type": "string", "format": "date-time"},
            "data": {"type": "object", "properties": properties, "additionalProperties": True},
        },
        "additionalProperties": False,
    }


def index() -> dict[str, Any]:
    """The catalogue: its version and, per type, what it says."""
    return {
        "version": VERSION,
        "types": [{"type": t, "description": CATALOGUE[t]} for t in sorted(CATALOGUE)],
    }


def dump(type_: str) -> str:
    return json.dumps(schema(type_), indent=2, ensure_ascii=False) + "\n"


def write(folder: Path) -> list[Path]:
    """Write one `<type>.json` per catalogue type into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for type_ in sorted(CATALOGUE):
        path = folder / f"{type_}.json"
        path.write_text(dump(type_), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    write(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/webhooks/schemas"))
