"""The console's rule builder (`rules.builder`): each template's fields give a spec the API
accepts (`parse_rule` + `validate_rule`, what `POST /rules` runs) and that decides as expected
on a sample event through `rules.decide`; unreadable fields are named, nothing is built."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from tests.rules.rules_factories import (
    create_event,
    create_member,
    create_program,
    line,
)

from habitue.rules.builder import (
    KEPT,
    BuilderError,
    Problem,
    Template,
    build,
    cel_string,
    recognise,
)
from habitue.rules.compile import compile_rules, validate_rule
from habitue.rules.decide import decide
from habitue.rules.model import parse_rule
from habitue.rules.service import dump_spec
from habitue.rules.types import Decision, EarnPoints, GrantBenefit, IssueCoupon

# Wednesday 2026-01-07 21:30 and 20:30 in Paris (UTC+1).
WED_2130 = datetime(2026, 1, 7, 20, 30, tzinfo=UTC)
WED_2030 = datetime(2026, 1, 7, 19, 30, tzinfo=UTC)
THU_2130 = datetime(2026, 1, 8, 20, 30, tzinfo=UTC)


def _decide(spec: dict[str, Any], event: Any, **member: Any) -> Decision:
    parsed = parse_rule(spec)
    validate_rule(parsed)
    rules = compile_rules([parsed])
    return decide(event, create_member(**member), create_program(), rules, event.occurred_at)


def _points(decision: Decision, rule: str) -> int:
    return sum(
        e.amount for e in decision.effects if isinstance(e, EarnPoints) and e.rule_code == rule
    )


def test_category_multiplier_doubles_the_base_of_that_category_only() -> None:
    spec = build(
        Template.CATEGORY_MULTIPLIER, {"code": "coffee-x2", "category": "coffee", "factor": "2"}
    )
    assert spec["line_condition"] == 'line.category == "coffee"'
    assert spec["effect"] == {"kind": "multiplier", "factor": "2"}
    basket = (line("coffee", "7.00", 2), line("pastry", "5.50"))
    decision = _decide(spec, create_event(lines=basket))
    assert _points(decision, "base") == 12
    assert _points(decision, "coffee-x2") == 7  # 7.00 € of coffee × (2 − 1)
    tea = _decide(spec, create_event(lines=(line("tea", "7.00"),)))
    assert _points(tea, "coffee-x2") == 0


def test_a_decimal_comma_is_read_as_a_point() -> None:
    spec = build(Template.CATEGORY_MULTIPLIER, {"code": "c", "category": "tea", "factor": "1,5"})
    assert spec["effect"]["factor"] == "1.5"
    assert _points(_decide(spec, create_event(lines=(line("tea", "10.00"),))), "c") == 5


def test_points_per_visit() -> None:
    spec = build(Template.PER_VISIT, {"code": "visit-10", "name": "10 a visit", "points": "10"})
    assert spec["event_type"] == "visit"
    assert _points(_decide(spec, create_event("visit")), "visit-10") == 10
    assert _points(_decide(spec, create_event("review")), "visit-10") == 0


def test_a_ritual_applies_in_its_window_only() -> None:
    fields = {
        "code": "wed-night",
        "days": ["wed"],
        "start": "21:00",
        "end": "23:59",
        "factor": "3",
        "category": "",
    }
    spec = build(Template.RITUAL, fields)
    assert spec["schedule"] == {"days": ["wed"], "start": "21:00", "end": "23:59"}
    assert "line_condition" not in spec
    basket = (line("coffee", "10.00"),)
    assert _points(_decide(spec, create_event(lines=basket, at=WED_2130)), "wed-night") == 20
    assert _points(_decide(spec, create_event(lines=basket, at=WED_2030)), "wed-night") == 0
    assert _points(_decide(spec, create_event(lines=basket, at=THU_2130)), "wed-night") == 0


def test_a_ritual_on_one_category() -> None:
    spec = build(
        Template.RITUAL,
        {
            "code": "r",
            "days": ["wed", "thu"],
            "start": "21:00",
            "end": "22:00",
            "factor": "2",
            "category": "coffee",
        },
    )
    assert spec["line_condition"] == 'line.category == "coffee"'
    basket = (line("coffee", "4.00"), line("pastry", "6.00"))
    assert _points(_decide(spec, create_event(lines=basket, at=THU_2130)), "r") == 4


def test_a_capped_action_stops_at_its_cap() -> None:
    spec = build(
        Template.CAPPED_ACTION,
        {
            "code": "review-50",
            "event_type": "review",
            "points": "50",
            "cap_count": "1",
            "cap_period": "week",
        },
    )
    assert spec["caps"] == [{"period": "week", "count": 1}]
    parsed = parse_rule(spec)
    rules = compile_rules([parsed])
    from habitue.rules.types import RuleTally, RuleUsage, Tally

    event = create_event("review")
    first = decide(event, create_member(), create_program(), rules, event.occurred_at)
    assert _points(first, "review-50") == 50
    used = RuleUsage({"review-50": RuleTally({"week": Tally(50, 1)})})
    second = decide(event, create_member(), create_program(), rules, event.occurred_at, used)
    assert _points(second, "review-50") == 0
    assert second.capped[0].rule_code == "review-50"


def test_a_random_reward_draws_with_the_given_chance() -> None:
    spec = build(
        Template.RANDOM_REWARD,
        {"code": "lottery", "event_type": "purchase", "reward_code": "free-pastry", "percent": "2"},
    )
    assert spec["effect"] == {"kind": "coupon", "reward_code": "free-pastry", "probability": "0.02"}
    won = 0
    for i in range(2000):
        event = create_event(lines=(line("coffee", "3.00"),), external_id=f"e{i}")
        decision = _decide(spec, event)
        won += any(isinstance(e, IssueCoupon) for e in decision.effects)
        assert len(decision.draws) == 1
    assert 20 <= won <= 60  # 2 % of 2,000 is 40
    always = build(
        Template.RANDOM_REWARD,
        {**spec, "event_type": "visit", "percent": "100", "reward_code": "free-pastry"},
    )
    decision = _decide(always, create_event("visit"))
    assert decision.effects == (IssueCoupon("free-pastry", "lottery", rule_version=1),)


def test_a_benefit_after_n_visits() -> None:
    spec = build(
        Template.AFTER_N,
        {
            "code": "fast-lane",
            "event_type": "visit",
            "count": "19",
            "window": "30d",
            "benefit": "fast_lane",
            "benefit_days": "30",
        },
    )
    assert spec["condition"] == "member.counters.visits_30d >= 19"
    assert spec["effect"] == {"kind": "benefit", "benefit": "fast_lane", "days": 30}
    # The counters hold the earlier events; the event decided counts itself.
    eighteenth = _decide(spec, create_event("visit"), counters={"visits_30d": 17})
    assert eighteenth.effects == ()
    nineteenth = _decide(spec, create_event("visit"), counters={"visits_30d": 18})
    assert nineteenth.effects == (GrantBenefit("fast_lane", "fast-lane", 30, rule_version=1),)


def test_a_benefit_after_n_purchases_in_the_lifetime_without_end() -> None:
    spec = build(
        Template.AFTER_N,
        {
            "code": "vip",
            "event_type": "purchase",
            "count": "100",
            "window": "lifetime",
            "benefit": "vip_corner",
        },
    )
    assert spec["condition"] == "member.counters.purchases_lifetime >= 100"
    assert "days" not in spec["effect"]
    event = create_event(lines=(line("coffee", "3.00"),))
    assert _decide(spec, event, counters={"purchases_lifetime": 99}).effects[-1] == GrantBenefit(
        "vip_corner", "vip", None, rule_version=1
    )


def test_a_category_with_quotes_stays_one_cel_string() -> None:
    category = 'say "hi" \\ o\'clock'
    spec = build(Template.CATEGORY_MULTIPLIER, {"code": "q", "category": category, "factor": "2"})
    assert spec["line_condition"] == f"line.category == {cel_string(category)}"
    odd = create_event(lines=(line(category, "10.00"),))
    assert _points(_decide(spec, odd), "q") == 10
    assert _points(_decide(spec, create_event(lines=(line("say", "10.00"),))), "q") == 0


@pytest.mark.parametrize(
    ("template", "fields", "errors"),
    [
        (
            Template.CATEGORY_MULTIPLIER,
            {"code": "", "category": "", "factor": "1"},
            {"code": Problem.REQUIRED, "category": Problem.REQUIRED, "factor": Problem.FACTOR},
        ),
        (
            Template.CATEGORY_MULTIPLIER,
            {"code": "Bad Code", "category": "x", "factor": "1e3"},
            {"code": Problem.CODE, "factor": Problem.FACTOR},
        ),
        (Template.PER_VISIT, {"code": "v", "points": "-3"}, {"points": Problem.WHOLE_NUMBER}),
        (Template.PER_VISIT, {"code": "v", "points": "2.5"}, {"points": Problem.WHOLE_NUMBER}),
        (
            Template.RITUAL,
            {"code": "r", "days": [], "start": "25:00", "end": "", "factor": "2"},
            {"days": Problem.DAYS, "start": Problem.TIME, "end": Problem.REQUIRED},
        ),
        (
            Template.RITUAL,
            {
                "code": "r",
                "days": ["wed", "someday"],
                "start": "21:00",
                "end": "22:00",
                "factor": "2",
            },
            {"days": Problem.DAYS},
        ),
        (
            Template.CAPPED_ACTION,
            {
                "code": "c",
                "event_type": "refund",
                "points": "5",
                "cap_count": "0",
                "cap_period": "fortnight",
            },
            {
                "event_type": Problem.CHOICE,
                "cap_count": Problem.WHOLE_NUMBER,
                "cap_period": Problem.CHOICE,
            },
        ),
        (
            Template.RANDOM_REWARD,
            {"code": "l", "event_type": "purchase", "reward_code": "", "percent": "0"},
            {"reward_code": Problem.REQUIRED, "percent": Problem.PERCENT},
        ),
        (
            Template.RANDOM_REWARD,
            {"code": "l", "event_type": "purchase", "reward_code": "x", "percent": "101"},
            {"percent": Problem.PERCENT},
        ),
        (
            Template.AFTER_N,
            {
                "code": "a",
                "event_type": "visit",
                "count": "5",
                "window": "year",
                "benefit": "Fast lane",
            },
            {"window": Problem.CHOICE, "benefit": Problem.NAME},
        ),
        ("nothing", {}, {"template": Problem.CHOICE}),
    ],
)
def test_unreadable_fields_are_named(
    template: str, fields: dict[str, Any], errors: dict[str, Problem]
) -> None:
    with pytest.raises(BuilderError) as caught:
        build(template, fields)
    assert caught.value.errors == errors


ROUND_TRIPS: list[tuple[Template, dict[str, Any]]] = [
    (Template.CATEGORY_MULTIPLIER, {"code": "cm", "name": "Double", "category": 'te"a',
                                    "factor": "1.5"}),
    (Template.PER_VISIT, {"code": "pv", "name": "", "points": "10"}),
    (Template.RITUAL, {"code": "ri", "name": "Late", "days": ["wed", "sun"], "start": "21:00",
                       "end": "02:00", "factor": "3", "category": ""}),
    (Template.RITUAL, {"code": "ri2", "name": "", "days": ["mon"], "start": "08:00",
                       "end": "09:30", "factor": "2", "category": "coffee"}),
    (Template.CAPPED_ACTION, {"code": "ca", "name": "Review", "event_type": "review",
                              "points": "50", "cap_count": "1", "cap_period": "week"}),
    (Template.CAPPED_ACTION, {"code": "ca2", "name": "", "event_type": "visit",
                              "points": "5", "cap_count": "3", "cap_period": "day"}),
    (Template.RANDOM_REWARD, {"code": "rr", "name": "", "event_type": "purchase",
                              "reward_code": "pastry", "percent": "2.5"}),
    (Template.AFTER_N, {"code": "an", "name": "Lane", "event_type": "visit", "window": "30d",
                        "count": "19", "benefit": "fast_lane", "benefit_days": "30"}),
    (Template.AFTER_N, {"code": "an2", "name": "", "event_type": "purchase",
                        "window": "lifetime", "count": "100", "benefit": "vip",
                        "benefit_days": ""}),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "fields"), ROUND_TRIPS, ids=lambda v: str(v)[:24])
def test_a_stored_rule_from_the_form_opens_in_its_form_again(
    kind: Template, fields: dict[str, Any]
) -> None:
    """Built, stored as the API stores it (every default filled in, decimals as text), then
    recognised: the same template and the very fields typed, which build the same rule."""
    stored = dump_spec(parse_rule(build(kind, fields)))
    found = recognise(stored)
    assert found is not None
    assert found[0] is kind
    assert found[1] == fields
    assert dump_spec(parse_rule(build(kind, found[1]))) == stored


def test_every_template_has_a_round_trip_case() -> None:
    assert {kind for kind, _ in ROUND_TRIPS} == set(Template)


def test_a_switched_off_rule_is_recognised_and_keeps_its_switch() -> None:
    stored = dump_spec(parse_rule(build(*ROUND_TRIPS[1]))) | {"active": False}
    found = recognise(stored)
    assert found is not None and found[0] is Template.PER_VISIT
    assert KEPT == ("active",)


@pytest.mark.parametrize(
    "change",
    [
        {"condition": "event.total > 10"},  # a condition the form has no field for
        {"priority": 5},
        {"exclusive": True},
        {"budget": 1000},
        {"audience": {"tiers": ["gold"], "segments": []}},
        {"line_condition": 'line.category == "coffee" || line.sku == "tea"'},
        {"caps": [{"period": "week", "count": None, "points": 100}]},
        {"effect": {"kind": "per_unit", "points": 2}},
        {"valid_from": "2026-01-01T00:00:00Z"},
    ],
    ids=lambda c: next(iter(c)),
)
def test_a_rule_changed_by_hand_opens_in_the_raw_editor(change: dict[str, Any]) -> None:
    """What the form cannot show is never dropped by it: such a rule is not recognised."""
    stored = dump_spec(parse_rule(build(*ROUND_TRIPS[0])))
    assert recognise(stored | change) is None


def test_rules_no_template_writes_are_not_recognised() -> None:
    hand = {"code": "x", "event_type": "purchase", "condition": "member.tier == 'gold'",
            "effect": {"kind": "per_currency_unit", "rate": "2"}}  # fmt: skip
    assert recognise(dump_spec(parse_rule(hand))) is None
    assert recognise({"code": "x"}) is None  # not a rule at all
    # "After N" on a counter the form does not offer.
    after = dump_spec(parse_rule(build(*ROUND_TRIPS[7])))
    assert recognise(after | {"condition": "member.counters.visits_7d >= 19"}) is None
