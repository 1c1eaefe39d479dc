"""Every rule shown in docs/rules.md is a valid rule, and the demo rules are documented."""

from __future__ import annotations

import json
import re
from pathlib import Path

from habitue.rules.compile import validate_rule
from habitue.rules.demo_rules import DEMO_RULES
from habitue.rules.model import RuleSpec, parse_rule

DOC = Path(__file__).resolve().parents[2] / "docs" / "rules.md"


def doc_rules() -> list[RuleSpec]:
    blocks = re.findall(r"```json\n(.*?)```", DOC.read_text(), re.DOTALL)
    return [parse_rule(json.loads(b)) for b in blocks]


def test_documented_rules_are_valid() -> None:
    specs = doc_rules()
    assert len(specs) == 8
    for spec in specs:
        validate_rule(spec)


def test_demo_rules_are_the_documented_ones() -> None:
    documented = {s.code: s for s in doc_rules()}
    for spec in DEMO_RULES:
        assert documented[spec.code] == spec
