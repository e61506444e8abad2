"""Read-only SQL over the results store: DuckDB views on the Parquet files, nothing else.

Only a single SELECT runs. The connection can read the store's folder and no other file, and
its configuration is locked before the query runs, so a query can neither write nor reach
anything outside the store.
"""
from __future__ import annotations

from typing import Any, Literal

import pandas as pd

from harness.errors import HarnessError
from harness.results_store import ResultsStore, empty_table

Format = Literal["table", "csv", "json"]
TABLES = ("records", "runs")


class QueryError(HarnessError):
    """The SQL is not a single read-only statement, or DuckDB rejected it."""


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def connect(store: ResultsStore) -> Any:
    """An in-memory DuckDB with views `records` and `runs`; file access limited to the store."""
    import duckdb

    con = duckdb.connect(":memory:")
    for table in TABLES:
        files = [str(f.resolve()) for f in store.files(table)]
        if files:
            paths = ", ".join(_literal(f) for f in files)
            con.execute(f"CREATE VIEW {table} AS SELECT * FROM "
                        f"read_parquet([{paths}], union_by_name = true)")
        else:
            con.register(table, empty_table(table))
    allowed = str(store.dir.resolve()) + "/"
    con.execute(f"SET allowed_directories = [{_literal(allowed)}]")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def check_read_only(con: Any, sql: str) -> None:
    """Refuse anything but one SELECT statement (COPY, CREATE, INSERT, ATTACH, SET, ...)."""
    import duckdb

    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(f"query: {_first_line(exc)}") from None
    if len(statements) != 1:
        raise QueryError(f"query: give one statement, not {len(statements)}")
    kind = getattr(statements[0].type, "name", str(statements[0].type))
    if kind != "SELECT":
        raise QueryError(f"query: the store is read-only; only SELECT runs, not {kind}")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def run_query(store: ResultsStore, sql: str) -> pd.DataFrame:
    """Run one read-only SELECT over the store and return its rows."""
    import duckdb

    con = connect(store)
    try:
        check_read_only(con, sql)
        return con.execute(sql).fetchdf()
    except duckdb.Error as exc:
        raise QueryError(f"query: {_first_line(exc)}") from None
    finally:
        con.close()


def stored_runs(store: ResultsStore) -> pd.DataFrame:
    """One row per run in the store, oldest first."""
    return run_query(store, "SELECT * EXCLUDE (signature, ingested_at) FROM runs "
                            "ORDER BY started NULLS FIRST, run_id")


def render(frame: pd.DataFrame, fmt: Format) -> str:
    """The rows as a Markdown table, CSV or a JSON list of objects."""
    if fmt == "csv":
        return frame.to_csv(index=False).rstrip("\n")
    if fmt == "json":
        return frame.to_json(orient="records", date_format="iso", indent=1)
    return frame.to_markdown(index=False) if len(frame) else "(no rows)"
