"""Portable SQL: a query is written once in DuckDB's dialect and runs on DuckDB or on Spark.

The DuckDB backend runs the text as written over Arrow tables registered as views; the Spark
backend transpiles it with sqlglot to Spark SQL and runs it over temporary views made from the
same Arrow tables. Both return a pyarrow Table, so results can be compared row for row. Both
sessions compute in UTC, so casts of timestamps to dates agree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
import sqlglot

from habitue.analytics.errors import InvalidAnalyticsInput

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

SOURCE_DIALECT = "duckdb"

Backend = Callable[[str, Mapping[str, Any]], pa.Table]
"""Runs a portable query over named tables and returns the result as Arrow."""


def timestamp_literal(moment: datetime) -> str:
    """A SQL literal for an aware datetime, in UTC, that both dialects read the same way."""
    if moment.tzinfo is None:
        raise InvalidAnalyticsInput("times must be timezone-aware (UTC)")
    text = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return f"CAST('{text}+00:00' AS TIMESTAMPTZ)"


def date_literal(moment: datetime) -> str:
    """A SQL DATE literal for the UTC calendar day of an aware datetime."""
    if moment.tzinfo is None:
        raise InvalidAnalyticsInput("times must be timezone-aware (UTC)")
    return f"CAST('{moment.astimezone(UTC).date().isoformat()}' AS DATE)"


def to_spark_sql(query: str) -> str:
    """The portable query transpiled to Spark SQL (one statement)."""
    return sqlglot.transpile(query, read=SOURCE_DIALECT, write="spark")[0]


def run_duckdb(
    query: str,
    tables: Mapping[str, Any],
    *,
    connection: duckdb.DuckDBPyConnection | None = None,
) -> pa.Table:
    """Run the portable query on DuckDB over the given Arrow tables (or anything DuckDB scans)."""
    own = connection is None
    con = duckdb.connect() if connection is None else connection
    try:
        con.execute("SET TimeZone = 'UTC'")
        for name, table in tables.items():
            con.register(name, table)
        result: pa.Table = con.sql(query).to_arrow_table()
        for name in tables:
            con.unregister(name)
        return result
    finally:
        if own:
            con.close()


def spark_session(*, app_name: str = "habitue-analytics", master: str = "local[2]") -> SparkSession:
    """A local Spark session set up for these queries (UTC, no UI, 2 shuffle partitions)."""
    from pyspark.sql import SparkSession

    builder: Any = SparkSession.builder
    session: SparkSession = (
        builder.master(master)
        .appName(app_name)
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.driver.extraJavaOptions", "-Duser.timezone=UTC")
        .config("spark.executor.extraJavaOptions", "-Duser.timezone=UTC")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    return session


def run_spark(
    query: str,
    tables: Mapping[str, pa.Table],
    *,
    spark: SparkSession | None = None,
) -> pa.Table:
    """Run the portable query, transpiled to Spark SQL, over the given Arrow tables."""
    session = spark_session() if spark is None else spark
    session.conf.set("spark.sql.session.timeZone", "UTC")
    for name, table in tables.items():
        if not isinstance(table, pa.Table):
            raise InvalidAnalyticsInput("the Spark backend takes pyarrow Tables")
        session.createDataFrame(table).createOrReplaceTempView(name)
    try:
        result: pa.Table = session.sql(to_spark_sql(query)).toArrow()
    finally:
        for name in tables:
            session.catalog.dropTempView(name)
    return result
