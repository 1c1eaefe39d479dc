"""Promotion conditions memoised on the values they read (bench/price: CEL once per distinct
value, not per line, deal and basket): the same answers as a plain evaluation."""

from __future__ import annotations

from typing import Any

from habitue.promotions.conditions import compile_condition


def _line(sku: str, category: str, amount: float) -> dict[str, Any]:
    return {"sku": sku, "category": category, "quantity": 1.0, "unit_price": amount,
            "unit_price_minor": int(amount * 100), "amount": amount,
            "amount_minor": int(amount * 100), "amount_excl": amount,
            "amount_excl_minor": int(amount * 100), "tax_rate": 0.0}  # fmt: skip


def test_a_line_condition_runs_cel_once_per_value_it_reads() -> None:
    cond = compile_condition("line.sku == 'MUG' && line.amount > 2.0", "x", line=True)
    assert cond.paths == (("line", "amount"), ("line", "sku"))
    cases = [("MUG", 3.0, True), ("MUG", 1.0, False), ("TEA", 3.0, False), ("MUG", 3.0, True)]
    for sku, amount, expected in cases:
        assert cond.evaluate({"line": _line(sku, "x", amount)}) is expected
    assert len(cond.memo) == 3  # the repeated line was answered from the memo


def test_basket_lines_carry_only_the_fields_named_unless_used_whole() -> None:
    lines = [_line("A", "furniture", 1.0), _line("B", "furniture", 2.0), _line("C", "food", 3.0)]
    roots = {"basket": {"lines": lines, "total": 6.0}}
    named = compile_condition(
        "basket.lines.filter(l, l.category == 'furniture').size() >= 2", "x"
    )
    assert (named.line_fields, named.evaluate(roots)) == (("category",), True)
    whole = compile_condition("basket.lines.map(l, l).size() == 3", "x")
    assert (whole.line_fields, whole.evaluate(roots)) == (None, True)
    assert not named.memo  # a list is not a memo key
    total = compile_condition("basket.total >= 5.0 && member.tier == 'gold'", "x")
    assert total.evaluate({**roots, "member": {"tier": "gold"}}) is True
    assert total.evaluate({**roots, "member": {"tier": ""}}) is False
    assert total.evaluate({"basket": {"total": 1.0}, "member": {"tier": "gold"}}) is False


def test_a_missing_free_form_field_reads_as_missing() -> None:
    cond = compile_condition("has(member.attributes.vip) && member.attributes.vip", "x")
    assert cond.evaluate({"member": {"attributes": {"vip": True}}}) is True
    assert cond.evaluate({"member": {"attributes": {}}}) is False
    assert cond.evaluate({"member": {"attributes": {"vip": False}}}) is False
