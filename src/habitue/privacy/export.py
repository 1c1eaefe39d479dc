"""Export (GDPR Art. 15/20): everything held on one member, as one JSON document.

Every table with a `member_id` column is either in `SECTIONS` (its rows of the member are
exported under that section's name) or in `EXCLUDED` with the reason; a test over the schema
fails when a table is in neither. Secret columns (password and token hashes, sign-in seeds,
CSRF tokens) and the contacts' keyed hashes are never exported.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Table, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue import models as _all_models  # noqa: F401 - every table in the metadata
from habitue.db import Base
from habitue.members.errors import MemberNotFound
from habitue.privacy import audit
from habitue.privacy.schemas import ExportRead
from habitue.programs.service import ProgramInfo

FORMAT = "habitue-member-export/1"

SECTIONS: dict[str, str] = {
    "cards": "cards",
    "accounts": "ledger_accounts",
    "ledger_transactions": "ledger_transactions",
    "postings": "ledger_postings",
    "lots": "lots",
    "events": "events",
    "event_lines": "event_lines",
    "tier_status": "tier",
    "tier_history": "tier_history",
    "tier_buckets": "tier_qualification",
    "tier_contributions": "tier_contributions",
    "club_subscriptions": "club_subscriptions",
    "club_payments": "club_payments",
    "redemptions": "redemptions",
    "coupons": "coupons",
    "coupon_attempts": "coupon_attempts",
    "offer_targets": "offers",
    "referral_codes": "referral_code",
    "referrals": "referrals",
    "outbox": "messages",
    "segment_members": "segments",
    "member_scores": "scores",
    "campaign_assignments": "campaigns",
    "partner_movements": "partner_movements",
    "rule_usage": "rule_usage",
    "member_counters": "counters",
    "web_sessions": "portal_sessions",
    "member_consent_history": "consent_history",
    "member_benefits": "benefits",
    "deliveries": "deliveries",
    "fraud_holds": "fraud_holds",
    "message_marks": "timed_messages_sent",
    "reward_levels": "reward_within_reach",
    "promotion_uses": "promotion_uses",
    "basket_confirmations": "baskets_confirmed",
}
"""Table → section of the export holding the member's rows of it."""

EXCLUDED: dict[str, str] = {
    "member_credentials": "holds only the portal password's argon2 hash: a secret, not data "
    "about the member (its existence shows as `has_password` in the profile)",
    "member_sign_in_tokens": "single-use sign-in links: hashes and seeds that would sign in "
    "whoever holds them; they expire within the hour",
    "tier_eval_stage": "scratch rows of one tier evaluation pass, empty between passes",
}
"""Tables with a `member_id` column deliberately left out of the export, with the reason."""

SECRET_COLUMNS = frozenset(
    {"token_hash", "password_hash", "seed", "csrf", "email_hash", "phone_hash"}
)

PUBLIC_ID_TABLES = frozenset({"outbox", "deliveries", "message_marks", "reward_levels"})
"""Tables whose `member_id` holds the member's public id (the others: the internal id)."""


def member_tables() -> dict[str, Table]:
    """Every table of the schema with a `member_id` column."""
    return {name: table for name, table in Base.metadata.tables.items() if "member_id" in table.c}


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return clock.as_utc(value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return None
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    return value


def _row(row: Any, *, drop: frozenset[str] = frozenset()) -> dict[str, Any]:
    return {
        key: _json(value)
        for key, value in row._mapping.items()
        if key not in SECRET_COLUMNS and key not in drop
    }


async def _rows(session: AsyncSession, table: Table, member_id: int, public_id: str) -> list[Any]:
    key: Any = public_id if table.name in PUBLIC_ID_TABLES else member_id
    cond = table.c.member_id == key
    if table.name == "referrals":  # as the one referred and as the referrer
        cond = or_(cond, table.c.referrer_id == member_id)
    pk = list(table.primary_key.columns)
    rows = await session.execute(select(table).where(cond).order_by(*pk))
    return list(rows)


async def _labels(session: AsyncSession, program: ProgramInfo) -> dict[str, dict[int, str]]:
    """Codes of what the member's rows point at (rewards, offers, segments, plans…), so the
    export reads without the internal ids."""
    out: dict[str, dict[int, str]] = {}
    for name in ("rewards", "offers", "segments", "club_plans", "campaigns", "partners", "rules"):
        table = Base.metadata.tables.get(name)
        if table is None or "code" not in table.c:
            continue
        rows = await session.execute(
            select(table.c.id, table.c.code).where(table.c.program_id == program.id)
        )
        out[name] = {int(i): str(c) for i, c in rows}
    return out


_LABELLED = {
    "reward_id": "rewards",
    "offer_id": "offers",
    "segment_id": "segments",
    "plan_id": "club_plans",
    "campaign_id": "campaigns",
    "partner_id": "partners",
    "rule_id": "rules",
}


async def export(session: AsyncSession, program: ProgramInfo, public_id: str) -> ExportRead:
    """The member's profile, then one section per table that holds rows about them."""
    members = Base.metadata.tables["members"]
    member = (
        await session.execute(
            select(members).where(
                members.c.program_id == program.id, members.c.public_id == public_id
            )
        )
    ).first()
    if member is None:
        raise MemberNotFound("no such member in this program")
    member_id = int(member.id)
    tables = member_tables()
    labels = await _labels(session, program)
    credentials = tables.get("member_credentials")
    has_password = False
    if credentials is not None:
        has_password = (
            await session.execute(
                select(credentials.c.id).where(credentials.c.member_id == member_id)
            )
        ).first() is not None
    sections: dict[str, Any] = {
        "profile": {**_row(member, drop=frozenset({"id", "program_id"})),
                    "has_password": has_password},
    }  # fmt: skip
    for table_name, section in SECTIONS.items():
        table = tables.get(table_name)
        if table is None:
            continue
        items = []
        for row in await _rows(session, table, member_id, public_id):
            item = _row(row, drop=frozenset({"program_id"}))
            if item.get("member_id") == member_id:
                item["member_id"] = public_id
            if table_name == "referrals" and item.get("referrer_id") == member_id:
                item["referrer_id"] = public_id
                if item.get("member_id") != public_id:
                    item["member_id"] = None  # the member they brought: not theirs to see
            for column, target in _LABELLED.items():
                if column in item and item[column] in labels.get(target, {}):
                    item[column.removesuffix("_id") + "_code"] = labels[target][item[column]]
            items.append(item)
        sections[section] = items
    # Who read or changed the member's data (GDPR Art. 15(1)(c): the recipients).
    log = await audit.query(
        session, chain=program.id, resource="member", resource_id=public_id, limit=100_000
    )
    sections["access_log"] = [_json(entry) for entry in log]
    return ExportRead(
        format=FORMAT,
        generated_at=clock.now().isoformat(),
        program=program.code,
        member_id=public_id,
        sections=sections,
    )
