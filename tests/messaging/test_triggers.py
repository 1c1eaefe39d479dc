"""Which domain events call for a message, and whether it would reach the member."""

from __future__ import annotations

import pytest

from habitue.messaging import render, triggers


def test_events_map_to_the_trigger_templates() -> None:
    assert triggers.template_code("member.enrolled", {}) == "welcome"
    assert triggers.template_code("tier.changed", {"direction": "up"}) == "tier_up"
    assert triggers.template_code("tier.changed", {"direction": "down"}) is None
    # off by default: planned only where the program wrote a points_earned template
    assert triggers.template_code("points.earned", {"points": 5}) == "points_earned"
    assert triggers.template_code("points.expiring", {}) == "points_expiring"
    assert triggers.template_code("member.birthday", {}) == "birthday"
    assert triggers.template_code("reward.available", {}) == "reward_available"
    assert triggers.template_code("points.spent", {"points": 5}) is None
    assert set(triggers.TRIGGERS.values()) <= set(render.SUGGESTED_CODES)


@pytest.mark.parametrize(
    ("channel", "consents", "email", "phone", "expected"),
    [
        ("email", {"email": {"granted": True, "at": "2026-01-01"}}, "a@b.c", None, None),
        ("email", {"email": {"granted": False}}, "a@b.c", None, "no-consent"),
        ("email", {}, "a@b.c", None, "no-consent"),
        ("email", {"email": {"granted": True}}, None, None, "no-address"),
        ("sms", {"sms": {"granted": True}}, "a@b.c", None, "no-address"),
        ("sms", {"sms": {"granted": True}}, None, "+33 6 12 34 56 78", None),
        ("push", {"push": {"granted": True}}, None, None, None),
        ("push", {"push": True}, None, None, None),
        ("fax", {"fax": {"granted": True}}, None, None, "no-consent"),
    ],
)
def test_a_message_needs_consent_and_an_address(
    channel: str,
    consents: dict[str, object],
    email: str | None,
    phone: str | None,
    expected: str | None,
) -> None:
    assert triggers.blocked(channel, consents=consents, email=email, phone=phone) == expected


def test_an_imported_member_calls_for_no_welcome() -> None:
    assert triggers.template_code("member.enrolled", {"source": triggers.IMPORTED}) is None
    assert triggers.template_code("member.enrolled", {"source": "api"}) == "welcome"
