"""Card numbers: Luhn check digit, program prefix, scanned payloads."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from habitue.members.cards import (
    luhn_check_digit,
    luhn_valid,
    new_card_number,
    new_card_numbers,
    parse_card_input,
    qr_payload,
)


def test_luhn_known_numbers() -> None:
    assert luhn_valid("79927398713")
    assert not luhn_valid("79927398710")
    assert luhn_check_digit("7992739871") == "3"
    assert not luhn_valid("4111-1111")


@given(st.text(alphabet="0123456789", min_size=1, max_size=30))
def test_check_digit_always_validates(body: str) -> None:
    assert luhn_valid(body + luhn_check_digit(body))


@given(st.text(alphabet="0123456789", min_size=2, max_size=30), st.integers(1, 9))
def test_single_digit_error_is_caught(number: str, delta: int) -> None:
    valid = number[:-1] + luhn_check_digit(number[:-1])
    broken = valid[:-1] + str((int(valid[-1]) + delta) % 10)
    assert not luhn_valid(broken)


def test_new_numbers_carry_prefix_and_check_digit() -> None:
    numbers = {new_card_number("800042") for _ in range(200)}
    assert len(numbers) == 200
    for n in numbers:
        assert len(n) == 16 and n.startswith("800042") and luhn_valid(n)


def test_scanned_inputs() -> None:
    assert parse_card_input(qr_payload("cafe", "8000421234567890")) == ("cafe", "8000421234567890")
    assert parse_card_input(" 8000 4212-3456 7890 ") == (None, "8000421234567890")


def test_bulk_card_numbers_are_valid_distinct_and_spread() -> None:
    """One draw of randomness for many cards: each is a valid number under the prefix, and
    every digit position takes all ten values (a biased or truncated draw would not)."""
    numbers = new_card_numbers("4242", 5000)
    assert len(numbers) == len(set(numbers)) == 5000
    assert all(len(n) == 16 and n.startswith("4242") and luhn_valid(n) for n in numbers)
    for position in range(4, 15):
        assert {n[position] for n in numbers} == set("0123456789")
