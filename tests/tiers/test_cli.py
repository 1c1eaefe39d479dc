"""`habitue tiers evaluate` runs against the test database (one subprocess: it is slow)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HABITUE = Path(sys.executable).parent / "habitue"


def test_cli_evaluate_runs_and_refuses_an_unknown_program(db_url: str) -> None:
    env = {**os.environ, "HABITUE_DATABASE_URL": db_url, "HABITUE_ENV": "test"}
    done = subprocess.run(  # noqa: S603
        [str(HABITUE), "tiers", "evaluate", "--program", "nope"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "refused" in done.stderr
    assert "no program 'nope'" in done.stderr
