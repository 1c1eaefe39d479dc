"""The event pipeline is built from an explicit list, not from registrations at import time."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from habitue.events.pipeline import Pipeline
from habitue.rooms import build_pipeline

SRC = Path(__file__).resolve().parents[2] / "src" / "habitue"


def test_the_pipeline_lists_each_stage_once_in_a_fixed_order() -> None:
    one, two = build_pipeline(), build_pipeline()
    for f in fields(Pipeline):
        value = getattr(one, f.name)
        assert value == getattr(two, f.name), f.name  # the same order every time
        if isinstance(value, tuple):
            assert len(set(value)) == len(value), f"{f.name} lists a stage twice"
    assert one.rule_loaders and one.enrichers and one.after_event and one.after_refund


def test_member_reads_are_named_by_room() -> None:
    names = [read.name for read in build_pipeline().member_reads]
    assert len(set(names)) == len(names)
    assert all(re.fullmatch(r"[a-z]+\.[a-z_]+", n) for n in names), names


def test_no_room_registers_itself_and_no_class_name_is_a_public_kind() -> None:
    """No global hook list is appended to at import time, and no answer's `kind` is a Python
    class name (`type(x).__name__`)."""
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"hooks\.\w+\.append\(|APPLIERS|event_extras", text), path
        assert not re.search(r"kind\"?\s*[:=]\s*type\([^)]*\)\.__name__", text), path
