"""Every code a person reads has a label in English, French and Danish (issue 19, item 5).

The codes the rooms can produce (member, card, club, coupon and redemption statuses, ledger
and effect kinds, the demo's privileges) must each have a built-in label, translated in every
catalogue; the pages show the label and never the code, and a program's own words (points
name, tier names, privileges) replace them per language.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

import httpx
import pytest
from babel.messages.pofile import read_po

from habitue.analytics import rfm
from habitue.clubs.schemas import SubscriptionStatus
from habitue.members.schemas import CHANNELS, MemberUpdate
from habitue.privacy.erasure import ERASED
from habitue.rewards.redeem import _status_for
from habitue.rewards.schemas import FulfilmentUpdate, RewardKind
from habitue.rules.types import EffectKind
from habitue.web import i18n, labels
from tests.web.conftest import csrf_of, make_staff, signup, staff_signin

SRC = Path(labels.__file__).resolve().parents[1]


def _catalogue(locale: str) -> dict[str, str]:
    with i18n.po_path(locale).open("rb") as fp:
        catalog = read_po(fp, locale=locale)
    return {str(m.id): str(m.string) for m in catalog if m.id and m.string and not m.fuzzy}


def _ledger_kinds_in_source() -> set[str]:
    """The `kind` literals of the modules that write to the ledger."""
    found: set[str] = set()
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        if "ledger_service" not in text or "/web/" in str(path):
            continue
        found |= set(re.findall(r'\bkind="([a-z_]+)"', text))
        found |= set(re.findall(r'"kind": "([a-z_]+)"', text))
    return found


def _demo_privileges() -> set[str]:
    found: set[str] = set()
    for name in ("demo.py", "demo_rooms.py", "rules/demo_rules.py"):
        text = (SRC / name).read_text()
        for group in re.findall(r'privileges"?\s*[:=]\s*\[([^\]]*)\]', text):
            found |= set(re.findall(r'"([^"]+)"', group))
        found |= set(re.findall(r'benefit="([^"]+)"', text))
    return found


PRODUCED: dict[str, set[str]] = {
    "member_status": set(get_args(get_args(MemberUpdate.model_fields["status"].annotation)[0]))
    | {ERASED},
    "club_status": set(get_args(SubscriptionStatus)),
    "redemption_status": {_status_for(k) for k in get_args(RewardKind)}
    | set(get_args(FulfilmentUpdate.model_fields["status"].annotation))
    | {"canceled"},
    "effect_kind": {k.value for k in EffectKind} | {"return", "takeback"},
    "privilege": _demo_privileges(),
    "rfm_group": set(rfm.SEGMENTS),
    "consent": set(CHANNELS),
}


def test_the_rooms_codes_all_have_a_label() -> None:
    assert PRODUCED["privilege"] >= {"free_refill", "priority_queue", "presale", "fast_lane"}
    missing = {
        group: sorted(code for code in codes if not labels.has_label(group, code))
        for group, codes in PRODUCED.items()
    }
    assert {g: m for g, m in missing.items() if m} == {}
    kinds = _ledger_kinds_in_source() - set(labels.EFFECT_KINDS) - {"available", "pending"}
    kinds -= {"member", "staff", "stable", "newsletter", "tier_upgrade", "tier_reversal"}
    assert sorted(k for k in kinds if k not in labels.LEDGER_KINDS) == []


@pytest.mark.parametrize("locale", ["fr", "da"])
def test_every_label_is_translated(locale: str) -> None:
    catalogue = _catalogue(locale)
    untranslated = sorted(
        f"{group}:{code}"
        for group, table in labels.GROUPS.items()
        for code, text in table.items()
        if not catalogue.get(text)
    )
    assert untranslated == []


def test_a_code_without_a_label_is_made_readable_not_shown_raw() -> None:
    fr = i18n.translations("fr").gettext
    assert labels.label("privilege", "free_refill", fr) == "Recharge gratuite"
    assert labels.label("privilege", "corner_table", fr) == "Corner table"
    da = i18n.translations("da").gettext
    assert labels.label("club_status", "trialing", da) == "Gratis prøveperiode"


async def test_pages_show_labels_and_the_programs_own_words(
    client: httpx.AsyncClient, program: str, db: object
) -> None:
    plan: dict[str, object] = {"code": "club", "name": "Club", "price": "5.00"}
    plan |= {"currency": "EUR", "period": "monthly", "privileges": ["free_refill", "presale"]}
    assert (await client.post(f"/v1/programs/{program}/club/plans", json=plan)).status_code == 201
    await signup(client, program, locale="fr")
    page = await client.get(f"/app/{program}/club")
    plan_html = page.text[page.text.index('id="plan-club"') :]
    assert "Recharge gratuite" in plan_html
    assert "Accès anticipé aux ventes" in plan_html
    assert ">free_refill<" not in plan_html

    # The owner names the points in French and Danish on the Words page.
    from habitue.db import Database

    assert isinstance(db, Database)
    staff = httpx.AsyncClient(transport=client._transport, base_url="http://test")
    email = await make_staff(db, "owner")
    await staff_signin(staff, email)
    words = await staff.get(f"/admin/{program}/words")
    assert words.status_code == 200
    assert 'id="w-fr-privilege-free_refill"' in words.text
    r = await staff.post(
        f"/admin/{program}/words",
        data={
            "csrf_token": csrf_of(words.text),
            "w-fr-points-": "grains de café",
            "w-da-points-": "kaffebønner",
            "w-fr-privilege-free_refill": "Café à volonté",
        },
    )
    assert r.status_code == 303
    saved = await staff.get(r.headers["location"])
    assert 'value="grains de café"' in saved.text
    card = await client.get(f"/app/{program}/card")
    assert "grains de café" in card.text
    page = await client.get(f"/app/{program}/club")
    assert "Café à volonté" in page.text
    await staff.aclose()
