"""Coupon and referral codes: `secrets` randomness in an alphabet without look-alikes.

The alphabet has 31 symbols (no 0/O, 1/I/L); 13 random symbols carry 64.4 bits, and a 14th is
a Luhn mod 31 check character that catches any single mistyped symbol and most swaps of two
neighbours before the database is asked.
"""

from __future__ import annotations

import secrets

ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
N = len(ALPHABET)
_INDEX = {ch: i for i, ch in enumerate(ALPHABET)}
RANDOM_LENGTH = 13
BITS = 64  # floor(13 * log2(31)) = 64


def check_char(body: str) -> str:
    """The Luhn mod N check character of `body` (symbols of ALPHABET)."""
    factor = 2
    total = 0
    for ch in reversed(body):
        addend = factor * _INDEX[ch]
        factor = 1 if factor == 2 else 2
        total += addend // N + addend % N
    return ALPHABET[(N - total % N) % N]


def random_body(length: int = RANDOM_LENGTH) -> str:
    """`length` symbols drawn from one `secrets.randbelow` call."""
    value = secrets.randbelow(N**length)
    out = []
    for _ in range(length):
        value, r = divmod(value, N)
        out.append(ALPHABET[r])
    return "".join(out)


def new_code(length: int = RANDOM_LENGTH) -> str:
    """A fresh code: random symbols and their check character, unformatted."""
    body = random_body(length)
    return body + check_char(body)


def normalise(raw: str) -> str:
    """Upper-case, without the dashes and spaces people type."""
    return "".join(ch for ch in raw.upper() if ch not in "- \t")


def is_well_formed(code: str) -> bool:
    """True when every symbol is in the alphabet and the check character matches."""
    if len(code) < 2 or any(ch not in _INDEX for ch in code):
        return False
    return check_char(code[:-1]) == code[-1]


def display(code: str) -> str:
    """Groups of four joined by dashes, for print and for people."""
    return "-".join(code[i : i + 4] for i in range(0, len(code), 4))
