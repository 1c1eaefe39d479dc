"""Rules that must be refused on save, each with the field (and CEL position) at fault."""

from __future__ import annotations

from typing import Any

import pytest

from habitue.rules.compile import compile_rules, rule_set_warnings, validate_rule
from habitue.rules.errors import RuleValidationError
from habitue.rules.model import RuleSpec, parse_rule

BASE: dict[str, Any] = {
    "code": "r",
    "event_type": "purchase",
    "effect": {"kind": "fixed", "points": 10},
}


def with_(**kw: Any) -> dict[str, Any]:
    return {**BASE, **kw}


def error_of(data: dict[str, Any]) -> RuleValidationError:
    with pytest.raises(RuleValidationError) as info:
        validate_rule(parse_rule(data))
    return info.value


@pytest.mark.parametrize(
    ("data", "field", "message", "position"),
    [
        (
            with_(condition="event.total >"),
            "condition",
            "invalid CEL: Syntax error: mismatched input '<EOF>' expecting",
            (1, 14),
        ),
        (
            with_(condition="event.total > 10 &&\n  member.tier = 'gold'"),
            "condition",
            "invalid CEL: Syntax error:",
            (2, 15),
        ),
        (
            with_(condition="customer.tier == 'gold'"),
            "condition",
            "unknown variable 'customer'; use event, member, now",
            (1, 1),
        ),
        (
            with_(condition="line.category == 'coffee'"),
            "condition",
            "unknown variable 'line'; use event, member, now ('line' is only available in "
            "line_condition)",
            (1, 1),
        ),
        (
            with_(condition="event.totl > 10.0"),
            "condition",
            "unknown field 'event.totl'; known: attributes, base_points, discount,",
            (1, 7),
        ),
        (
            with_(line_condition="line.categorie == 'coffee'"),
            "line_condition",
            "unknown field 'line.categorie'",
            (1, 6),
        ),
        (
            with_(condition="member.tier.name == 'gold'"),
            "condition",
            "'member.tier' is a str; it has no field 'name'",
            (1, 13),
        ),
        (
            with_(
                condition="now.hour >= 21 && member.counters.visits_30d >= 19 && "
                "event.attributes.channel == 'app' && isWeekend(now)"
            ),
            "condition",
            "unknown function 'isWeekend'",
            (1, 92),
        ),
        (
            with_(condition="event.total"),
            "condition",
            "must return a bool, returns float (5.0)",
            None,
        ),
        (with_(condition="now.hour + 1"), "condition", "must return a bool, returns int", None),
        (
            with_(condition="event.total_minor > 10.5 + 1"),
            "condition",
            "does not evaluate: Unsupported operation: float + int",
            None,
        ),
        (
            with_(condition="[1].exists(event, event > 0)"),
            "condition",
            "'event' is reserved",
            (1, 12),
        ),
        (with_(caps=[{"period": "week", "count": 0}]), "caps[0].count", "must be > 0", None),
        (
            with_(caps=[{"period": "day", "points": 10}, {"period": "week", "points": -5}]),
            "caps[1].points",
            "must be > 0",
            None,
        ),
        (with_(caps=[{"period": "day"}]), "caps[0]", "set points or count", None),
        (
            with_(
                effect={"kind": "benefit", "benefit": "x"}, caps=[{"period": "day", "points": 5}]
            ),
            "caps[0].points",
            "kind 'benefit' grants no points; cap its count",
            None,
        ),
        (with_(budget=0), "budget", "must be > 0", None),
        (
            with_(valid_from="2026-02-01T00:00:00Z", valid_to="2026-01-01T00:00:00Z"),
            "valid_to",
            "must be after valid_from",
            None,
        ),
        (with_(valid_from="2026-02-01T00:00:00"), "valid_from", "must carry a UTC offset", None),
        (
            with_(effect={"kind": "fixed", "points": 5, "probability": "0"}),
            "effect.probability",
            "must be > 0 and ≤ 1",
            None,
        ),
        (
            with_(effect={"kind": "fixed", "points": 5, "probability": "1.5"}),
            "effect.probability",
            "must be > 0 and ≤ 1",
            None,
        ),
        (with_(effect={"kind": "fixed"}), "effect.points", "kind 'fixed' needs points > 0", None),
        (
            with_(effect={"kind": "fixed", "points": 5, "factor": "2"}),
            "effect.factor",
            "is not used by kind 'fixed'",
            None,
        ),
        (
            with_(effect={"kind": "multiplier", "factor": "1"}),
            "effect.factor",
            "kind 'multiplier' needs factor > 1",
            None,
        ),
        (
            with_(event_type="visit", effect={"kind": "multiplier", "factor": "2"}),
            "effect.kind",
            "a multiplier applies to the base points of purchases only",
            None,
        ),
        (
            with_(effect={"kind": "per_currency_unit", "rate": "-1"}),
            "effect.rate",
            "kind 'per_currency_unit' needs rate > 0",
            None,
        ),
        (
            with_(effect={"kind": "coupon"}),
            "effect.reward_code",
            "kind 'coupon' needs a reward_code",
            None,
        ),
        (
            with_(schedule={"days": ["wed"], "start": "21:00", "end": "24:00"}),
            "schedule.end",
            "'24:00' is not a time HH:MM",
            None,
        ),
        (
            with_(schedule={"days": [], "start": "21:00"}),
            "schedule.days",
            "must name at least one day",
            None,
        ),
        (with_(code="base"), "code", "use 1-64 lowercase letters", None),
        (with_(event_type="refund"), "event_type", "refunds take back", None),
        (with_(event_type="Purchase!"), "event_type", "use lowercase letters", None),
    ],
)
def test_rejected(
    data: dict[str, Any], field: str, message: str, position: tuple[int, int] | None
) -> None:
    err = error_of(data)
    assert (err.field, err.message[: len(message)]) == (field, message)
    if position is not None:
        assert (err.line, err.column) == position


def test_shape_errors_name_the_field() -> None:
    with pytest.raises(RuleValidationError) as info:
        parse_rule(with_(caps=[{"period": "fortnight", "count": 1}]))
    assert info.value.field == "caps[0].period"
    assert info.value.message.startswith("Input should be 'day', 'week', 'month', 'year'")
    with pytest.raises(RuleValidationError) as info:
        parse_rule(with_(effect={"kind": "fixed", "points": 5, "pionts": 1}))
    assert (info.value.field, info.value.message) == (
        "effect.pionts",
        "Extra inputs are not permitted",
    )


def test_error_as_dict() -> None:
    err = error_of(with_(condition="event.total >"))
    assert err.as_dict() == {
        "field": "condition",
        "message": err.message,
        "line": 1,
        "column": 14,
    }
    assert str(err).startswith("condition: invalid CEL:")


@pytest.mark.parametrize(
    "condition",
    [
        "true",
        "has(event.attributes.channel) && event.attributes.channel == 'app'",
        "event.attributes.network == 'instagram'",  # free-form: checked at run time
        "member.counters.visits_30d >= 19 && member.counters['purchases_30d.coffee'] > 2",
        "event.lines.exists(l, l.category == 'coffee' && l.quantity >= 2.0)",
        "size(event.lines) >= 3 && event.total >= 20.0 && 'vip' in member.segments",
        "member.tenure_days > 365 && member.status == 'active' && !('fast' in member.benefits)",
        "now.weekday_name in ['sat', 'sun'] || now.hour < 7",
    ],
)
def test_accepted(condition: str) -> None:
    validate_rule(parse_rule(with_(condition=condition)))


def test_duplicate_codes_and_exclusive_overlap_warning() -> None:
    spec = RuleSpec.model_validate(BASE)
    with pytest.raises(RuleValidationError, match="duplicate rule code 'r'"):
        compile_rules([spec, spec])
    a = RuleSpec.model_validate(with_(code="a", exclusive=True, priority=3))
    b = RuleSpec.model_validate(with_(code="b", exclusive=True, priority=3))
    c = RuleSpec.model_validate(with_(code="c", exclusive=True, priority=2))
    assert rule_set_warnings([a, b, c]) == [
        "exclusive rules a, b share event type 'purchase' and priority 3: "
        "they do not exclude each other"
    ]
