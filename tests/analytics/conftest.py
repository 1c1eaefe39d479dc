"""Fixtures of the analytics tests: the CDNOW data and one Spark session for the whole run."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).parent / "data"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "spark: runs on a local PySpark session (needs Java)")


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """One local[2] Spark session shared by every Spark test (it costs seconds to start)."""
    if os.environ.get("HABITUE_SKIP_SPARK") == "1":
        pytest.skip("HABITUE_SKIP_SPARK=1")
    from habitue.analytics.portable import spark_session

    session = spark_session(app_name="habitue-analytics-tests")
    yield session
    session.stop()
