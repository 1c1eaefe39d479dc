"""The sandboxed rendering of message templates, without a database."""

from __future__ import annotations

from datetime import date

import pytest

from habitue.messaging import render
from habitue.messaging.errors import InvalidTemplate


def test_the_member_language_then_english_then_any() -> None:
    assert render.pick_locale({"en", "fr"}, "fr") == "fr"
    assert render.pick_locale({"en", "fr"}, "da") == "en"
    assert render.pick_locale({"da"}, "fr") == "da"
    assert render.pick_locale({"en"}, None) == "en"
    assert render.pick_locale(set(), "en") is None


def test_values_are_written_for_the_reader() -> None:
    raw = {**render.SAMPLE, "points": 1250, "expiring_on": date(2031, 1, 31), "tier": None}
    assert render.format_values(raw, "en", "UTC")["points"] == "1,250"
    assert render.format_values(raw, "fr", "UTC")["points"] == "1\u202f250"
    assert render.format_values(raw, "da", "UTC")["points"] == "1.250"
    assert render.format_values(raw, "fr", "UTC")["expiring_on"] == "31 janvier 2031"
    assert render.format_values(raw, "en", "UTC")["tier"] == ""


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ first_name.format.__globals__ }}",
        "{{ '{0.__class__}'.format(first_name) }}",
        "{{ '%0999999d'|format(1) }}",
        "{{ '{:>99999}'.format(first_name) }}",
        "{{ first_name.ljust(99999) }}",
        "{{ 9 ** 9999 }}",
        "{{ 9999 * 9999 }}",
        "{{ first_name * 999 * 999 }}",
        "{% macro m() %}{% endmacro %}",
        "{% extends 'x' %}",
        "{{ range(10) }}",
        "{{ lipsum() }}",
    ],
)
def test_the_sandbox_refuses(source: str) -> None:
    with pytest.raises(InvalidTemplate):
        render.check("sms", None, source)


def test_email_bodies_are_escaped_subjects_and_texts_are_not() -> None:
    values = render.format_values({**render.SAMPLE, "first_name": "A & <B>"}, "en", "UTC")
    out = render.render("email", "To {{ first_name }}", "<p>{{ first_name }}</p>", values)
    assert out == render.Rendered("To A & <B>", "<p>A &amp; &lt;B&gt;</p>")
    assert render.render("sms", None, "{{ first_name }}", values).body == "A & <B>"
    # What a template does with the values is allowed: filters, conditions, small formats.
    body = "{% if tier %}{{ tier|upper }}{% else %}-{% endif %} {{ '%5s'|format(points) }}"
    assert render.render("push", None, body, values).body == "GOLD 1,250"
