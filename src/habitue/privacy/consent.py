"""Consent history: every consent given or withdrawn, with time, source and text version.

The member's current choices stay on `members.consents` (what segments, messages and exports
read); each change also appends a row to `member_consent_history`, which is never updated.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from habitue import clock
from habitue.db import table_of
from habitue.privacy.models import ConsentChange

PORTAL_TEXT_VERSION = "portal-consents-2026-12b"
"""The version of the consent wording of the portal (`web/templates/portal/_consents.html`):
bump it whenever that wording changes, so the history tells which text a member agreed to."""

_history = table_of(ConsentChange)


async def record(
    session: AsyncSession,
    *,
    program_id: int,
    member_id: int,
    changes: Mapping[str, bool],
    source: str,
    text_version: str | None,
    actor: str | None,
) -> None:
    """Append one row per purpose whose consent was given or withdrawn."""
    if not changes:
        return
    if text_version is None and source == "portal":
        text_version = PORTAL_TEXT_VERSION
    now = clock.now()
    await session.execute(
        insert(_history),
        [
            {
                "program_id": program_id,
                "member_id": member_id,
                "purpose": purpose,
                "granted": bool(granted),
                "source": source[:32],
                "text_version": text_version,
                "actor": actor[:200] if actor else None,
                "recorded_at": now,
            }
            for purpose, granted in sorted(changes.items())
        ],
    )
