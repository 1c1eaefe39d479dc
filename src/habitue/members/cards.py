"""Card numbers with a Luhn check digit, and the payloads printed on cards."""

from __future__ import annotations

import secrets

CARD_LENGTH = 16
QR_SCHEME = "habitue"


def luhn_check_digit(body: str) -> str:
    """The digit that makes `body + digit` pass the Luhn check."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    """True when `number` is all digits and its last digit is the Luhn check digit."""
    return len(number) >= 2 and number.isdigit() and luhn_check_digit(number[:-1]) == number[-1]


def new_card_number(prefix: str) -> str:
    """A random card number under the program prefix, ending with its Luhn digit."""
    return new_card_numbers(prefix, 1)[0]


def new_card_numbers(prefix: str, n: int) -> list[str]:
    """`n` random card numbers under the prefix from one draw of the system's randomness
    (a bulk enrolment would otherwise pay one system call per number)."""
    random_len = CARD_LENGTH - len(prefix) - 1
    space = 10**random_len
    limit = (1 << 64) - (1 << 64) % space  # rejection keeps every body equally likely
    out: list[str] = []
    while len(out) < n:
        pool = secrets.token_bytes(8 * (n - len(out)))
        for i in range(0, len(pool), 8):
            draw = int.from_bytes(pool[i : i + 8], "big")
            if draw < limit:
                body = f"{prefix}{draw % space:0{random_len}d}"
                out.append(body + luhn_check_digit(body))
    return out


def qr_payload(program_code: str, card_number: str) -> str:
    """What the card's QR code carries: scheme, program and number."""
    return f"{QR_SCHEME}:{program_code}:{card_number}"


def parse_card_input(value: str) -> tuple[str | None, str]:
    """Split a scanned value (number, barcode or QR payload) into (program code, number)."""
    value = value.strip()
    if value.startswith(QR_SCHEME + ":"):
        parts = value.split(":")
        if len(parts) == 3:
            return parts[1], parts[2]
    return None, value.replace(" ", "").replace("-", "")
