"""Every message of the pages is translated into French and Danish."""

from __future__ import annotations

from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from habitue.web import i18n

WEB = Path(i18n.__file__).parent


def _extracted() -> set[str]:
    found = set()
    method_map = [("**.py", "python"), ("templates/**.html", "jinja2")]
    options = {"templates/**.html": {"trim_blocks": "True", "lstrip_blocks": "True"}}
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2), "_l": None}
    for _file, _line, message, _comments, _ctx in extract_from_dir(
        str(WEB), method_map, options_map=options, keywords=keywords
    ):
        found.add(message if isinstance(message, str) else message[0])
    return found


@pytest.mark.parametrize("locale", ["fr", "da"])
def test_catalogue_is_complete(locale: str) -> None:
    with i18n.po_path(locale).open("rb") as fp:
        catalog = read_po(fp, locale=locale)
    messages = _extracted()
    assert len(messages) > 100
    missing = sorted(m for m in messages if not (catalog.get(m) and catalog.get(m).string))
    assert missing == []
    fuzzy = [m.id for m in catalog if m.id and m.fuzzy]
    assert fuzzy == []


def test_formatting_follows_the_locale() -> None:
    assert i18n.Formatter("da").number(1234567) == "1.234.567"
    assert i18n.Formatter("en").number(1234567) == "1,234,567"
    assert i18n.Formatter("fr").money("12.50", "EUR").startswith("12,50")
    assert i18n.from_accept_language("da-DK,da;q=0.9,en;q=0.8") == "da"
    assert i18n.from_accept_language("de-DE, fr;q=0.5") == "fr"
    assert i18n.from_accept_language("de") is None
    assert i18n.translations("fr").gettext("My card") == "Ma carte"
