"""`fast_init`: the same objects as the dataclass's own `__init__`, still frozen."""

from __future__ import annotations

import copy
import pickle
from dataclasses import FrozenInstanceError, dataclass, field, fields, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from habitue.frozen import fast_init
from habitue.rules import types


def _twin(cls: type[Any]) -> type[Any]:
    """The same class built by `dataclass` alone (its generated `__init__`)."""
    namespace: dict[str, Any] = {"__annotations__": {}}
    for f in fields(cls):
        namespace["__annotations__"][f.name] = f.type
        if f.default_factory is not f.default or f.kw_only:  # a default or keyword only
            namespace[f.name] = field(
                default=f.default, default_factory=f.default_factory, kw_only=f.kw_only
            )
    return dataclass(frozen=True, slots=True)(type(cls.__name__, (), namespace))


@fast_init
@dataclass(frozen=True, slots=True)
class Sample:
    a: int
    b: str = "b"
    c: list[int] = field(default_factory=list)
    d: Decimal = Decimal(1)
    e: int = field(default=5, kw_only=True)


def _values(obj: Any) -> tuple[Any, ...]:
    return tuple(getattr(obj, f.name) for f in fields(obj))


CALLS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    ((1,), {}),
    ((1, "x"), {}),
    ((1, "x", [3]), {"e": 7}),
    ((), {"a": 2, "d": Decimal("2.5")}),
    ((3,), {"c": [1, 2], "b": "y"}),
]


@pytest.mark.parametrize(("args", "kwargs"), CALLS)
def test_same_fields_as_the_dataclass_init(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    fast, slow = Sample(*args, **kwargs), _twin(Sample)(*args, **kwargs)
    assert _values(fast) == _values(slow)
    assert repr(fast).split("(", 1)[1] == repr(slow).split("(", 1)[1]


def test_bad_calls_fail_as_the_dataclass_init_fails() -> None:
    bad: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
        ((), {}), ((1, 2, 3, 4, 5), {}), ((1,), {"z": 1}), ((1,), {"a": 1})
    ]  # fmt: skip
    for args, kwargs in bad:
        with pytest.raises(TypeError):
            Sample(*args, **kwargs)
        with pytest.raises(TypeError):
            _twin(Sample)(*args, **kwargs)


def test_still_frozen_hashable_and_copyable() -> None:
    obj = Sample(1, c=[])
    with pytest.raises(FrozenInstanceError):
        obj.a = 2  # type: ignore[misc]
    line = types.LineInput("s", "coffee", Decimal(2), 150, 300)
    assert hash(line) == hash(types.LineInput("s", "coffee", Decimal(2), 150, 300))
    assert line != types.LineInput("s", "coffee", Decimal(2), 150, 301)
    assert replace(line, amount_minor=1).amount_minor == 1
    assert pickle.loads(pickle.dumps(line)) == line  # noqa: S301 - our own bytes
    assert copy.copy(line) == line
    with pytest.raises(FrozenInstanceError):
        line.amount_minor = 2  # type: ignore[misc]


def test_default_factories_give_a_new_value_each_time() -> None:
    one, two = Sample(1), Sample(1)
    assert one.c == [] and one.c is not two.c
    event = types.EventInput("purchase", "t1", datetime(2026, 1, 1, tzinfo=UTC), 100)
    assert event.attributes == {} and event.attributes is not types.EventInput(
        "purchase", "t2", event.occurred_at, 1
    ).attributes


@pytest.mark.parametrize(
    "cls",
    [types.LineInput, types.EventInput, types.MemberSnapshot, types.EarnPoints,
     types.AddTierCredits, types.Capped, types.Tally, types.RuleTally, types.RuleUsage,
     types.Decision],  # fmt: skip
)
def test_the_rules_values_match_their_dataclass_init(cls: type[Any]) -> None:
    """Each value class of the rules, built from the same arguments both ways."""
    samples: dict[type[Any], tuple[Any, ...]] = {
        types.LineInput: ("s", None, Decimal("1.5"), 99, 149),
        types.EventInput: ("purchase", "t", datetime(2026, 1, 1, tzinfo=UTC), 5),
        types.MemberSnapshot: ("m", "active", datetime(2025, 1, 1, tzinfo=UTC)),
        types.EarnPoints: (5, "base"),
        types.AddTierCredits: (5, "r"),
        types.Capped: ("r", 10, 5, "cap"),
        types.Tally: (3,),
        types.RuleTally: (),
        types.RuleUsage: (),
        types.Decision: ((),),
    }
    args = samples[cls]
    assert _values(cls(*args)) == _values(_twin(cls)(*args))


def test_refused_where_it_would_not_be_exact() -> None:
    @dataclass(slots=True)
    class Mutable:
        a: int

    @dataclass(frozen=True, slots=True)
    class WithPostInit:
        a: int

        def __post_init__(self) -> None:
            pass

    @dataclass(frozen=True, slots=True)
    class NotInInit:
        a: int = field(default=1, init=False)

    for cls in (Mutable, WithPostInit, NotInInit):
        with pytest.raises(TypeError):
            fast_init(cls)


def test_build_many_gives_the_constructors_objects() -> None:
    from habitue.frozen import build_many

    values = [
        ("s1", "tea", Decimal("1.5"), 120, 180, 0, None),
        (None, None, Decimal(2), 5, 10, 1, Decimal("0.2")),
    ]
    made = build_many(types.LineInput, *zip(*values, strict=True))
    assert [repr(m) for m in made] == [repr(types.LineInput(*v)) for v in values]
    assert made == [types.LineInput(*v) for v in values]
    with pytest.raises(FrozenInstanceError):
        made[0].sku = "x"  # type: ignore[misc]
    assert build_many(types.LineInput, *([],) * 7) == []
    with pytest.raises(TypeError):
        build_many(types.LineInput, ["s1"], ["tea"])  # a column short
    with pytest.raises(TypeError):  # not a fast_init class
        build_many(_twin(Sample), [1], ["b"], [[]], [Decimal(1)], [5])
    with pytest.raises(ValueError, match="lengths"):
        build_many(Sample, [1, 2], ["b"], [[]], [Decimal(1)], [5])
