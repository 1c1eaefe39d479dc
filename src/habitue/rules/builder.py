"""The console's rule builder: a few form fields for a common rule → the rule spec the API takes.

Pure (no I/O): `build` turns the fields of one `Template` into the JSON of `POST /rules`, with
the CEL written out (`line.category == "coffee"`, `member.counters.visits_30d >= 19`), so a
rule made in the form is the rule an expert would have written by hand, and the raw editor
shows it. A field that cannot be read is reported as `BuilderError.errors` (field → `Problem`);
the spec built is then checked by `rules.compile.validate_rule` like any other.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from habitue.bounds import MAX_POINTS
from habitue.rules.model import WEEKDAYS, RuleSpec


class Template(StrEnum):
    """The common rules the console's form builds."""

    CATEGORY_MULTIPLIER = "category_multiplier"
    """×factor on the base points of the basket's lines of one category."""
    PER_VISIT = "per_visit"
    """Fixed points for every visit (check-in)."""
    RITUAL = "ritual"
    """×factor on purchases on some days of the week between two local times."""
    CAPPED_ACTION = "capped_action"
    """Fixed points for an action (a review, a share), at most N times per member and period."""
    RANDOM_REWARD = "random_reward"
    """A coupon of a catalogue reward, won by a share of the matching events."""
    AFTER_N = "after_n"
    """A named benefit once a member has done N events of a type within a window."""


class Problem(StrEnum):
    """Why a field of the form cannot be read (the console shows each in the reader's
    language)."""

    REQUIRED = "required"
    """The field is empty."""
    CODE = "code"
    """Not a rule code (lowercase letters, digits, `-`, `_`, `.`; at most 64)."""
    WHOLE_NUMBER = "whole_number"
    """Not a whole number within bounds."""
    FACTOR = "factor"
    """Not a multiplier above 1 (such as 2 or 1.5)."""
    PERCENT = "percent"
    """Not a percentage above 0 and at most 100."""
    TIME = "time"
    """Not a time of day HH:MM."""
    DAYS = "days"
    """No day of the week chosen."""
    CHOICE = "choice"
    """Not one of the options offered."""
    NAME = "name"
    """Not a snake_case word (a benefit's name, such as fast_lane)."""
    TOO_LONG = "too_long"
    """The text is too long."""


class BuilderError(ValueError):
    """Fields of the form that cannot be read: field name → problem."""

    def __init__(self, errors: Mapping[str, Problem]) -> None:
        self.errors = dict(errors)
        super().__init__(", ".join(f"{k}: {v}" for k, v in self.errors.items()))


ACTION_TYPES: tuple[str, ...] = ("review", "social", "visit", "referral", "app_open", "purchase")
"""Event types a capped action or a random reward may be about."""
PERIODS: tuple[str, ...] = ("day", "week", "month", "year", "lifetime")
COUNTERS: dict[str, dict[str, str]] = {
    "visit": {"30d": "visits_30d", "lifetime": "visits_lifetime"},
    "purchase": {
        "30d": "purchases_30d",
        "year": "purchases_year",
        "lifetime": "purchases_lifetime",
    },
    "review": {"7d": "reviews_7d", "lifetime": "reviews_lifetime"},
}
"""For "after N events": event type → window → the member counter that counts them."""

FIELDS: dict[Template, tuple[str, ...]] = {
    Template.CATEGORY_MULTIPLIER: ("category", "factor"),
    Template.PER_VISIT: ("points",),
    Template.RITUAL: ("days", "start", "end", "factor", "category"),
    Template.CAPPED_ACTION: ("event_type", "points", "cap_count", "cap_period"),
    Template.RANDOM_REWARD: ("event_type", "reward_code", "percent"),
    Template.AFTER_N: ("event_type", "count", "window", "benefit", "benefit_days"),
}
"""The fields of each template, besides `code` and `name` (and `days`, a list)."""

_CODE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
_PLAIN = re.compile(r"^\d{1,9}(\.\d{1,6})?$")
_MAX_TEXT = 64


class _Reader:
    """Typed values from the form's strings, collecting a problem per field."""

    def __init__(self, fields: Mapping[str, Any]) -> None:
        self.fields = fields
        self.errors: dict[str, Problem] = {}

    def raw(self, name: str) -> str:
        value = self.fields.get(name, "")
        return value.strip() if isinstance(value, str) else ""

    def text(self, name: str, *, pattern: re.Pattern[str] | None = None) -> str:
        value = self.raw(name)
        if not value:
            self.errors[name] = Problem.REQUIRED
        elif len(value) > _MAX_TEXT:
            self.errors[name] = Problem.TOO_LONG
        elif pattern is not None and not pattern.match(value):
            self.errors[name] = Problem.CODE if name == "code" else Problem.NAME
        return value

    def choice(self, name: str, options: tuple[str, ...] | list[str]) -> str:
        value = self.raw(name)
        if value not in options:
            self.errors[name] = Problem.REQUIRED if not value else Problem.CHOICE
        return value

    def whole(self, name: str, *, minimum: int = 1, maximum: int = MAX_POINTS) -> int:
        value = self.raw(name).replace(" ", "").replace("\u00a0", "")
        if not value:
            self.errors[name] = Problem.REQUIRED
            return 0
        if not value.isdigit() or not minimum <= int(value) <= maximum:
            self.errors[name] = Problem.WHOLE_NUMBER
            return 0
        return int(value)

    def decimal(self, name: str, problem: Problem) -> Decimal:
        value = self.raw(name)
        if "," in value and "." not in value:
            value = value.replace(",", ".")  # the decimal point of French and Danish
        if not value:
            self.errors[name] = Problem.REQUIRED
            return Decimal(0)
        try:
            number = Decimal(value) if _PLAIN.match(value) else Decimal("NaN")
        except InvalidOperation:  # pragma: no cover - the pattern keeps this out
            number = Decimal("NaN")
        if not number.is_finite():
            self.errors[name] = problem
            return Decimal(0)
        return number

    def time(self, name: str) -> str:
        value = self.raw(name)
        if not value:
            self.errors[name] = Problem.REQUIRED
        elif not _HHMM.match(value):
            self.errors[name] = Problem.TIME
        return value


def cel_string(value: str) -> str:
    """A CEL string literal of `value` (double-quoted; quotes, backslashes and control
    characters escaped as CEL reads them)."""
    return json.dumps(value, ensure_ascii=False)


def _plain(number: Decimal) -> str:
    """A decimal as the API writes it: `2`, `1.5` (no exponent, no trailing zeros)."""
    text = format(number.normalize(), "f")
    return text


def build(template: Template | str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """The rule spec (JSON of `POST /rules`) for a template's form fields.

    `fields` holds strings (a form's values; `days` may be a list of `mon` … `sun`). Raises
    `BuilderError` naming every field that cannot be read; the spec returned still goes
    through the rules' own validation when it is saved.
    """
    try:
        kind = Template(template)
    except ValueError:
        raise BuilderError({"template": Problem.CHOICE}) from None
    r = _Reader(fields)
    code = r.text("code", pattern=_CODE)
    name = r.raw("name")
    if len(name) > 200:
        r.errors["name"] = Problem.TOO_LONG
    spec: dict[str, Any] = {"code": code, "name": name}
    if kind is Template.CATEGORY_MULTIPLIER:
        category = r.text("category")
        factor = _factor(r)
        spec |= {
            "event_type": "purchase",
            "line_condition": f"line.category == {cel_string(category)}",
            "effect": {"kind": "multiplier", "factor": _plain(factor)},
        }
    elif kind is Template.PER_VISIT:
        spec |= {"event_type": "visit", "effect": {"kind": "fixed", "points": r.whole("points")}}
    elif kind is Template.RITUAL:
        days = _days(r)
        start, end = r.time("start"), r.time("end")
        factor = _factor(r)
        category = r.raw("category")
        if len(category) > _MAX_TEXT:
            r.errors["category"] = Problem.TOO_LONG
        spec |= {
            "event_type": "purchase",
            "effect": {"kind": "multiplier", "factor": _plain(factor)},
            "schedule": {"days": days, "start": start, "end": end},
        }
        if category:
            spec["line_condition"] = f"line.category == {cel_string(category)}"
    elif kind is Template.CAPPED_ACTION:
        event_type = r.choice("event_type", ACTION_TYPES)
        points = r.whole("points")
        count = r.whole("cap_count")
        period = r.choice("cap_period", PERIODS)
        spec |= {
            "event_type": event_type,
            "effect": {"kind": "fixed", "points": points},
            "caps": [{"period": period, "count": count}],
        }
    elif kind is Template.RANDOM_REWARD:
        event_type = r.choice("event_type", ACTION_TYPES)
        reward = r.text("reward_code", pattern=_CODE)
        if r.errors.get("reward_code") is Problem.CODE:
            r.errors["reward_code"] = Problem.CHOICE
        percent = r.decimal("percent", Problem.PERCENT)
        if "percent" not in r.errors and not Decimal(0) < percent <= Decimal(100):
            r.errors["percent"] = Problem.PERCENT
        spec |= {
            "event_type": event_type,
            "effect": {
                "kind": "coupon",
                "reward_code": reward,
                "probability": _plain(percent / 100) if percent else "0",
            },
        }
    else:  # Template.AFTER_N
        event_type = r.choice("event_type", tuple(COUNTERS))
        windows = COUNTERS.get(event_type, {})
        window = r.choice("window", tuple(windows)) if windows else ""
        count = r.whole("count", maximum=100_000)
        benefit = r.text("benefit", pattern=_NAME)
        lasts = r.whole("benefit_days", maximum=36_500) if r.raw("benefit_days") else None
        counter = windows.get(window, "")
        effect: dict[str, Any] = {"kind": "benefit", "benefit": benefit}
        if lasts is not None:
            effect["days"] = lasts
        spec |= {
            "event_type": event_type,
            "condition": f"member.counters.{counter} >= {count}",
            "effect": effect,
        }
    if r.errors:
        raise BuilderError(r.errors)
    return spec


def _factor(r: _Reader) -> Decimal:
    factor = r.decimal("factor", Problem.FACTOR)
    if "factor" not in r.errors and not Decimal(1) < factor <= Decimal(100):
        r.errors["factor"] = Problem.FACTOR
    return factor


def _days(r: _Reader) -> list[str]:
    raw = r.fields.get("days", [])
    chosen = [raw] if isinstance(raw, str) else list(raw)
    days = [d for d in WEEKDAYS if d in chosen]
    if not days or len(days) != len(set(chosen)):
        r.errors["days"] = Problem.DAYS
    return list(days)


_CATEGORY_IS = re.compile(r'^line\.category == ("(?:[^"\\]|\\.)*")$')
_COUNTER_AT_LEAST = re.compile(r"^member\.counters\.([a-z0-9_]+) >= (\d+)$")
KEPT: tuple[str, ...] = ("active",)
"""Keys of a rule the form does not show but keeps when it edits the rule (its on/off)."""


def _category_of(line_condition: Any) -> str | None:
    match = _CATEGORY_IS.match(line_condition) if isinstance(line_condition, str) else None
    if match is None:
        return None
    value = json.loads(match.group(1))
    return value if isinstance(value, str) else None


def _text(value: Any) -> str:
    return "" if value is None else _plain(Decimal(str(value)))


def _fields_for(kind: Template, spec: Mapping[str, Any]) -> dict[str, Any] | None:
    """The form's fields a template would need to write `spec` (a guess, checked by the caller
    by building them again); None when the spec is plainly not of that template."""
    effect = spec.get("effect") or {}
    caps = spec.get("caps") or []
    schedule = spec.get("schedule") or {}
    fields: dict[str, Any] = {"code": spec.get("code", ""), "name": spec.get("name") or ""}
    if kind is Template.CATEGORY_MULTIPLIER or kind is Template.RITUAL:
        category = _category_of(spec.get("line_condition"))
        if effect.get("kind") != "multiplier" or (category is None and kind is not Template.RITUAL):
            return None
        fields |= {"category": category or "", "factor": _text(effect.get("factor"))}
        if kind is Template.RITUAL:
            days = list(schedule.get("days") or [])
            fields |= {"days": days, "start": schedule.get("start"), "end": schedule.get("end")}
    elif kind is Template.PER_VISIT:
        fields["points"] = str(effect.get("points", ""))
    elif kind is Template.CAPPED_ACTION:
        if len(caps) != 1:
            return None
        cap = caps[0]
        fields |= {"event_type": spec.get("event_type", ""), "points": str(effect.get("points")),
                   "cap_count": str(cap.get("count")), "cap_period": cap.get("period")}  # fmt: skip
    elif kind is Template.RANDOM_REWARD:
        probability = effect.get("probability")
        if probability is None:
            return None
        fields |= {"event_type": spec.get("event_type", ""),
                   "reward_code": effect.get("reward_code") or "",
                   "percent": _plain(Decimal(str(probability)) * 100)}  # fmt: skip
    else:  # Template.AFTER_N
        condition = spec.get("condition")
        match = _COUNTER_AT_LEAST.match(condition) if isinstance(condition, str) else None
        if match is None:
            return None
        event_type = spec.get("event_type", "")
        windows = {v: k for k, v in COUNTERS.get(event_type, {}).items()}
        lasts = effect.get("days")
        fields |= {"event_type": event_type, "window": windows.get(match.group(1), ""),
                   "count": match.group(2), "benefit": effect.get("benefit") or "",
                   "benefit_days": "" if lasts is None else str(lasts)}  # fmt: skip
    return fields


def recognise(spec: Mapping[str, Any]) -> tuple[Template, dict[str, Any]] | None:
    """The template and form fields that write `spec` (a stored rule or draft), or None when
    no template does: the form is only offered when `build` gives back this very rule.

    Each template's fields are read from the spec, built again and compared with the spec as
    `RuleSpec` reads both (defaults filled in, `2` and `2.0` alike), keys in `KEPT` aside. So
    a rule written by hand, or one the form made and an expert changed since (another
    condition, a cap, a schedule, a priority…), is never half-shown in a form that would
    drop what it cannot show: it opens in the raw editor."""
    try:
        stored = RuleSpec.model_validate(dict(spec))
    except ValueError:  # pydantic's ValidationError: not a rule at all
        return None
    for kind in Template:
        if stored.event_type not in _EVENT_TYPES[kind]:
            continue
        try:
            fields = _fields_for(kind, spec)
            if fields is None:
                continue
            built = build(kind, fields) | {k: spec[k] for k in KEPT if k in spec}
            if RuleSpec.model_validate(built) == stored:
                return kind, fields
        except (BuilderError, ValueError, ArithmeticError, AttributeError, TypeError):
            continue
    return None


_EVENT_TYPES: dict[Template, tuple[str, ...]] = {
    Template.CATEGORY_MULTIPLIER: ("purchase",),
    Template.PER_VISIT: ("visit",),
    Template.RITUAL: ("purchase",),
    Template.CAPPED_ACTION: ACTION_TYPES,
    Template.RANDOM_REWARD: ACTION_TYPES,
    Template.AFTER_N: tuple(COUNTERS),
}
