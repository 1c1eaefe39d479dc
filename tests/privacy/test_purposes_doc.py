"""The purposes table of docs/privacy.md ("Where each purpose is enforced") is pinned to the
code: every purpose has a row, and every test a row names exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from habitue.privacy.purposes import Purpose

ROOT = Path(__file__).resolve().parents[2]


def _rows() -> list[list[str]]:
    text = (ROOT / "docs" / "privacy.md").read_text()
    section = text.split("### Where each purpose is enforced", 1)[1].split("\n#", 1)[0]
    rows = []
    for line in section.splitlines():
        if line.startswith("| `"):
            rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows


def test_every_purpose_has_a_row_with_a_test() -> None:
    rows = _rows()
    named = {p for row in rows for p in re.findall(r"`(\w+)`", row[0])}
    assert named == {p.value for p in Purpose}
    assert all("::test_" in row[3] for row in rows), "each row names its test"


def test_every_test_the_table_names_exists() -> None:
    missing = []
    for row in _rows():
        for path, name in re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", row[3]):
            tree = ast.parse((ROOT / path).read_text())
            functions = (ast.FunctionDef, ast.AsyncFunctionDef)
            names = {n.name for n in ast.walk(tree) if isinstance(n, functions)}
            if name not in names:
                missing.append(f"{path}::{name}")
    assert missing == []
