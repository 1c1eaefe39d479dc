"""The console's rules list (issue 19, item 2): an on/off switch per rule that writes a new
version through the rules service, and the version history with who changed what."""

from __future__ import annotations

import ast
from pathlib import Path

import httpx

import habitue.web
from habitue.db import Database
from tests.conftest import enrol, purchase
from tests.web.conftest import csrf_of, make_staff, staff_signin

RULE = {
    "code": "double-coffee",
    "name": "Double points on coffee",
    "event_type": "purchase",
    "line_condition": "line.category == 'coffee'",
    "effect": {"kind": "multiplier", "factor": "2"},
}


async def _earned(client: httpx.AsyncClient, program: str, member: str) -> int:
    r = await purchase(
        client,
        program,
        member,
        "10.00",
        lines=[{"sku": "esp", "category": "coffee", "quantity": 1, "unit_price": "10.00"}],
    )
    assert r.status_code == 201, r.text
    return int(r.json()["points_earned"])


async def test_switch_a_rule_off_and_on_and_read_its_history(
    client: httpx.AsyncClient, program: str, db: Database
) -> None:
    assert (await client.post(f"/v1/programs/{program}/rules", json=RULE)).status_code == 201
    member = (await enrol(client, program, email="rules@example.com"))["id"]
    doubled = await _earned(client, program, member)
    email = await make_staff(db, "marketer")
    await staff_signin(client, email)
    page = await client.get(f"/admin/{program}/rules")
    assert page.status_code == 200
    assert '<tr id="rule-double-coffee" data-active="on">' in page.text
    assert 'role="switch" aria-checked="true"' in page.text
    r = await client.post(
        f"/admin/{program}/rules/double-coffee/switch",
        data={"csrf_token": csrf_of(page.text), "active": "off"},
    )
    assert r.status_code == 303
    page = await client.get(f"/admin/{program}/rules")
    assert '<tr id="rule-double-coffee" data-active="off">' in page.text
    assert await _earned(client, program, member) < doubled  # paused: no more double points
    history = await client.get(f"/admin/{program}/rules/double-coffee/history")
    assert history.status_code == 200
    assert '<tr id="version-2">' in history.text and email in history.text
    assert "On or off" in history.text
    assert (await client.get(f"/admin/{program}/rules/nope/history")).status_code == 404


def test_the_console_changes_live_rules_only_by_publishing_a_draft_or_switching() -> None:
    """Every call in the console's code that writes a live rule: publishing a draft
    (`rules.drafts.publish_draft`) and the on/off switch, which changes `active` only."""
    writers = {"create_rule", "update_rule", "delete_rule", "publish_draft"}
    found: list[tuple[str, str, str]] = []
    for path in sorted(Path(habitue.web.__file__).parent.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in writers
            ):
                found.append((path.name, node.func.attr, ast.unparse(node.args[-1])))
    assert sorted(found) == [
        ("admin_rule_drafts.py", "publish_draft", "key"),
        ("admin_rules.py", "update_rule", "{'active': on}"),
    ]
