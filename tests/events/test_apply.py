"""Every effect kind has an applier: the dispatch of `events.apply` covers `rules.types.Effect`.

`assert_never` makes mypy refuse an effect type without a branch; these tests fail at run time
too: when a type of the `Effect` union has no example here, no branch in the dispatch, or no
applier registered by its room.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, get_args

import pytest

from habitue import rooms
from habitue.events import apply
from habitue.programs.service import ProgramInfo
from habitue.rules.types import (
    AddTierCredits,
    Decision,
    EarnPoints,
    Effect,
    EffectKind,
    GrantBenefit,
    IssueCoupon,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
EXAMPLES: dict[type, Any] = {
    EarnPoints: EarnPoints(10, "base"),
    AddTierCredits: AddTierCredits(5, "credits"),
    GrantBenefit: GrantBenefit("fast_lane", "fast-lane", days=30),
    IssueCoupon: IssueCoupon("pastry", "lottery"),
}


def _program() -> ProgramInfo:
    fields_of = {f.name for f in fields(ProgramInfo)}
    values: dict[str, Any] = {name: None for name in fields_of}
    values.update(id=1, code="p", currency="EUR", currency_exponent=2, timezone="UTC")
    values.update(earn_rate=Decimal(1), redeem_rate=Decimal("0.01"), redeem_step=1)
    return ProgramInfo(**values)


def test_every_effect_type_has_an_example() -> None:
    assert set(get_args(Effect)) == set(EXAMPLES), "add an example (and an applier) for it"


def test_every_effect_kind_is_a_snake_case_word_with_a_docstring() -> None:
    kinds = {e.kind for e in EXAMPLES.values()} | {EffectKind.MULTIPLIER}
    assert kinds == set(EffectKind)
    assert all(k.value.replace("_", "").isalpha() and k.value.islower() for k in EffectKind)


async def test_each_effect_is_dispatched_to_its_applier() -> None:
    calls: list[str] = []

    async def benefit(_s: Any, target: apply.Target, effect: GrantBenefit) -> datetime | None:
        calls.append(f"benefit:{effect.benefit}:{target.event_id}")
        return target.now + timedelta(days=effect.days or 0)

    async def coupon(_s: Any, target: apply.Target, effect: IssueCoupon) -> apply.IssuedCoupon:
        calls.append(f"coupon:{effect.reward_code}:{target.event_id}")
        return apply.IssuedCoupon("ABCD-EFGH", effect.reward_code)

    appliers = apply.Appliers(benefit=benefit, coupon=coupon)
    decision = Decision(effects=tuple(EXAMPLES[t] for t in get_args(Effect)))
    target = apply.Target(_program(), 7, "ev-1", NOW)
    got = await apply.deliver(None, appliers, target, decision)  # type: ignore[arg-type]
    assert [e.kind for e in got] == ["earn", "tier_credits", "benefit", "coupon"]
    assert calls == ["benefit:fast_lane:ev-1", "coupon:pastry:ev-1"]
    assert got[2].until == NOW + timedelta(days=30)
    assert (got[3].coupon, got[3].reward) == ("ABCD-EFGH", "pastry")
    # The quote's entries: the same kinds, no coupon code, nothing applied.
    quoted = apply.entries(decision, NOW)
    assert [e.kind for e in quoted] == [e.kind for e in got]
    assert quoted[3].coupon is None and len(calls) == 2


async def test_a_kind_without_an_applier_fails_loudly() -> None:
    none = apply.Appliers()
    target = apply.Target(_program(), 7, "ev-1", NOW)
    for effect in (EXAMPLES[GrantBenefit], EXAMPLES[IssueCoupon]):
        with pytest.raises(apply.NoApplier):
            await apply.deliver(None, none, target, Decision(effects=(effect,)))  # type: ignore[arg-type]
    # Points alone need no applier (and no session).
    plain = Decision(effects=(EXAMPLES[EarnPoints], EXAMPLES[AddTierCredits]))
    assert len(await apply.deliver(None, none, target, plain)) == 2  # type: ignore[arg-type]


def test_the_pipeline_has_an_applier_for_every_kind() -> None:
    appliers = rooms.build_pipeline().appliers
    missing = [f.name for f in fields(apply.Appliers) if getattr(appliers, f.name) is None]
    assert missing == []
