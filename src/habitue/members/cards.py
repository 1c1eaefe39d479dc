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
    random_len = CARD_LENGTH - len(prefix) - 1
    body = prefix + "".join(str(secrets.randbelow(10)) for _ in range(random_len))
    return body + luhn_check_digit(body)


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
