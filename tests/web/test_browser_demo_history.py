"""Honest history in Chromium (issue 19, item 1): the console's dashboard on the demo café shows
a year of activity, not January to November at zero and the whole year in the load's month.

The demo is loaded small (30 members, 400 purchases spread over the simulated year) into a
database of this module's own, so that the test of the full demo (tests/test_demo.py) keeps
its sizes. The figures are read as a person reads them, from the tables the page shows with
its charts (month names through Babel, numbers in the language's format), in English and
French; axe on the dashboard, a screenshot of it in each language.
"""

# ruff: noqa: F811 (the fixtures are imported from test_browser and requested by name)
from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from babel.dates import format_date

from habitue import demo
from habitue.programs import service as programs_service
from habitue.web.i18n import date_locale, translations
from habitue.web.queries import months_back
from tests.conftest import fresh_database
from tests.web.test_browser import (  # noqa: F401 (fixtures)
    Pages,
    artifacts,
    browser,
    owner_on,
    server,
)

MEMBERS, PURCHASES, SEED = 30, 400, 11


@pytest.fixture(scope="module")
def db_url(db_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """This module's own database with the demo loaded small (the server fixture serves it)."""
    with fresh_database(db_kind, tmp_path_factory.mktemp("demo-db")) as url:
        # Programs are cached by code for the process's one database: another module's demo
        # café (tests/test_demo.py) must not stand for this one's.
        programs_service.forget()
        # `demo.load` runs its own event loops: keep it off Playwright's thread.
        loader = threading.Thread(
            target=lambda: demo.load(url, members=MEMBERS, purchases=PURCHASES, seed=SEED)
        )
        loader.start()
        loader.join()
        programs_service.forget()
        yield url
        programs_service.forget()


def _rows(page: Any, caption: str) -> list[list[str]]:
    """The cells' text of each body row of the table named `caption`, as shown."""
    table = page.get_by_role("table", name=caption, exact=True)
    assert table.count() == 1, caption
    rows = table.locator("tbody tr")
    return [
        [c.strip() for c in rows.nth(i).locator("td").all_inner_texts()]
        for i in range(rows.count())
    ]


def _number(text: str) -> int:
    """A whole number as the page writes it (1,132 · 1 132 · 1.132)."""
    assert re.fullmatch(r"-?[\d\s.,\u00a0\u202f]+", text), text
    return int(re.sub(r"[^\d-]", "", text))


@pytest.mark.parametrize("locale", ["en", "fr"])
def test_the_demo_dashboard_shows_a_year_of_activity(
    server: str, browser: Any, artifacts: Path, db_url: str, locale: str
) -> None:
    _ = translations(locale).gettext
    english, _pages = owner_on(browser, server, artifacts, db_url, demo.PROGRAM)
    context = browser.new_context(
        viewport={"width": 1440, "height": 900},
        locale={"en": "en-GB", "fr": "fr-FR"}[locale],
        storage_state=english.context.storage_state(),
    )
    english.context.close()
    page = context.new_page()
    pages = Pages(page, server, artifacts)
    page.goto(f"{server}/admin/{demo.PROGRAM}")
    assert page.locator("html").get_attribute("lang") == locale
    pages.check(f"demo-dashboard-{locale}")

    # The months of the charts: the last twelve, ending with this one, named in the language.
    dates = date_locale(locale, "Europe/Paris")
    labels = months_back(12)
    months = [format_date(date(int(m[:4]), int(m[5:]), 1), "MMM y", locale=dates) for m in labels]
    # The simulated year ends about now: every month before this one lies wholly inside it
    # (this month may have begun too recently to have had a purchase).
    full = len(months) - 1

    # Members over time and points per month: the two charts' data, in their table.
    per_month = _rows(page, _("Points per month"))
    assert [r[0] for r in per_month] == months
    members = [_number(r[1]) for r in per_month]
    issued = [_number(r[2]) for r in per_month]
    # Members joined over the year (at their first purchase), not all in the month of the load.
    assert all(n > 0 for n in members[:full]), members
    assert members == sorted(members), members
    # Points were earned in every month of the year, not all at once.
    assert all(n > 0 for n in issued[:full]), issued
    assert max(issued) < sum(issued) / 4, issued
    # Redemptions (and the partner's purchases paid with points) happened through the year,
    # each at its simulated moment, not all in the month the demo was loaded.
    redeemed = [_number(r[3]) for r in per_month]
    assert sum(1 for n in redeemed if n > 0) >= 3, redeemed
    assert redeemed[-1] < sum(redeemed) / 2, redeemed

    # Points owed at the end of each month: the liability built up over the year.
    owed_rows = _rows(page, _("Points owed to members over time"))
    assert [r[0] for r in owed_rows] == months
    owed = [_number(r[1]) for r in owed_rows]
    assert all(n > 0 for n in owed[:full]), owed
    assert len(set(owed)) >= 6, owed
    assert owed[-1] == _number(page.locator("#liability").inner_text())

    # Points expected to expire: lots earned through the year expire through the next one.
    expiry_rows = _rows(page, _("Points expected to expire"))
    expiring = {r[0]: _number(r[1]) for r in expiry_rows}
    assert sum(1 for n in expiring.values() if n > 0) >= 6, expiring
    assert max(expiring.values()) < sum(expiring.values()) / 3, expiring
    context.close()
