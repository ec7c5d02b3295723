"""Bulk loading for benchmarks: rows built in Python with their ids, sent with COPY.

Ids are assigned here so children can point at their parents before anything is sent; the
sequences are moved past them at the end, and VACUUM ANALYZE gives the planner the statistics
(and the visibility map) that autovacuum would have given a live database.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import psycopg

Columns = Mapping[str, tuple[str, ...]]  # table -> columns, id first; parents before children


def plain(url: str) -> str:
    """psycopg's own URL for a SQLAlchemy one."""
    return url.replace("+psycopg", "")


class Batch:
    """Rows for a chunk of patients, per table."""

    def __init__(
        self,
        columns: Columns,
        ids: Mapping[str, Iterator[int]],
        sids: Iterator[int],
        sid_format: str = "SM{:032x}",
    ) -> None:
        self.columns, self.ids, self.sids, self.sid_format = columns, ids, sids, sid_format
        self.rows: dict[str, list[tuple[Any, ...]]] = {table: [] for table in columns}

    def add(self, table: str, **values: Any) -> int:
        wanted = self.columns[table]
        if not self.rows[table] and values.keys() - set(wanted):
            # Checked once per table and batch: a misspelt column would silently load NULL.
            raise ValueError(f"{table}: no such column {values.keys() - set(wanted)}")
        new_id = next(self.ids[table])
        self.rows[table].append((new_id, *(values.get(c) for c in wanted[1:])))
        return new_id

    def twilio_sid(self) -> str:
        return self.sid_format.format(next(self.sids))


def copy_batch(conn: psycopg.Connection[Any], batch: Batch, totals: dict[str, int]) -> None:
    with conn.cursor() as cur:
        for table, columns in batch.columns.items():  # parents first: foreign keys hold
            with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in batch.rows[table]:
                    copy.write_row(row)
            totals[table] += len(batch.rows[table])


def finish_load(url: str, columns: Columns) -> None:
    with psycopg.connect(plain(url), autocommit=True) as conn:
        for table in columns:
            conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT coalesce(max(id), 0) + 1 FROM {table}), false)"
            )
        conn.execute("VACUUM ANALYZE")
