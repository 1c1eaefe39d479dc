"""The public `kind` of an answer's effects, and the tier history's `reason`: each a `StrEnum`
member of the room that writes it, snake_case, with a one-line docstring, and documented
(`docs/rules.md`, `docs/tiers.md`)."""

from __future__ import annotations

import ast
import inspect
import re
from enum import StrEnum
from pathlib import Path

import httpx

from habitue.events.kinds import RefundEffectKind
from habitue.rewards.kinds import ReferralEffectKind
from habitue.rules.types import EffectKind
from habitue.tiers.kinds import TierChangeReason, TierEffectKind
from tests.conftest import create_program, enrol, new_code, purchase
from tests.events.test_effects_applied import COUPON_RULE, add_reward, add_rule
from tests.tiers.helpers import ladder

EFFECT_KINDS: tuple[type[StrEnum], ...] = (
    EffectKind, TierEffectKind, ReferralEffectKind, RefundEffectKind)  # fmt: skip
DOCS = Path(__file__).resolve().parents[2] / "docs"


def _docstrings(enum: type[StrEnum]) -> dict[str, str]:
    """Each member's docstring (the string after its assignment in the class body)."""
    tree = ast.parse(inspect.getsource(inspect.getmodule(enum)))  # type: ignore[arg-type]
    [cls] = [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == enum.__name__]
    found: dict[str, str] = {}
    for stmt, after in zip(cls.body, cls.body[1:], strict=False):
        if (
            isinstance(stmt, ast.Assign)
            and isinstance(stmt.targets[0], ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            found[stmt.targets[0].id] = after.value.value
    return found


def _well_formed(enum: type[StrEnum]) -> None:
    docs = _docstrings(enum)
    for member in enum:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", member.value), member
        doc = docs.get(member.name, "")
        assert doc and "\n" not in doc, f"{enum.__name__}.{member.name}: one-line docstring"


def test_every_effect_kind_is_a_documented_snake_case_word_with_a_docstring() -> None:
    rules_md = (DOCS / "rules.md").read_text(encoding="utf-8")
    values = [member.value for enum in EFFECT_KINDS for member in enum]
    assert len(values) == len(set(values)), "two rooms use one kind"
    for enum in EFFECT_KINDS:
        _well_formed(enum)
        for member in enum:
            assert f"| `{member.value}` |" in rules_md, f"{member.value} not in docs/rules.md"


def test_every_tier_change_reason_is_documented() -> None:
    _well_formed(TierChangeReason)
    tiers_md = (DOCS / "tiers.md").read_text(encoding="utf-8")
    history = next(line for line in tiers_md.splitlines() if "/tier/history`" in line)
    assert set(re.findall(r"`([a-z_]+)`", history)) >= {r.value for r in TierChangeReason}


async def test_an_event_and_its_refund_answer_only_documented_kinds(
    client: httpx.AsyncClient,
) -> None:
    """A purchase that promotes and issues a coupon, then its refund: every `kind` of both
    answers is a member of the rooms' enums, and the tier history's reasons too."""
    program = await create_program(client)
    r = await ladder(client, program)
    assert r.status_code in (200, 201), r.text
    await add_reward(client, program)
    await add_rule(client, program, COUPON_RULE)
    member = (await enrol(client, program))["id"]
    bought = await purchase(client, program, member, "150.00", external_id="p1")
    assert bought.status_code == 201, bought.text
    body = {"type": "refund", "external_id": new_code("r"), "refers_to": "p1", "total": "150.00"}
    refunded = await client.post(f"/v1/programs/{program}/events", json=body)
    assert refunded.status_code == 201, refunded.text

    kinds = [e["kind"] for a in (bought.json(), refunded.json()) for e in a["effects"]]
    public = {member.value for enum in EFFECT_KINDS for member in enum}
    assert set(kinds) <= public, kinds
    assert {"earn", "coupon", "tier_upgrade", "takeback", "coupon_voided", "tier_reversal"} <= set(
        kinds
    ), kinds
    history = await client.get(f"/v1/programs/{program}/members/{member}/tier/history")
    assert history.status_code == 200, history.text
    data = history.json()
    items = data["items"] if isinstance(data, dict) else data
    reasons = {h["reason"] for h in items}
    assert reasons == {TierChangeReason.QUALIFIED, TierChangeReason.REFUND}, reasons
