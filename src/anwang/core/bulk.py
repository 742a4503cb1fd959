"""Bulk inserts and upserts for hot paths, on PostgreSQL and SQLite.

The device intake writes a few thousand rows per batch into a handful of tables, and the
plate-read storage consumer thousands of reads (on PostgreSQL). Going through
SQLAlchemy's multi-row ``INSERT … VALUES`` compiles a statement with one bound
parameter per value on every batch, and even an array per column makes the driver
adapt every value in Python — both cost more than the database's own work. So this
module writes the SQL once per (table, columns, conflict clause) and sends:

* PostgreSQL: one ``INSERT … SELECT … FROM json_to_recordset(%s::json)`` — the whole
  batch as *one* JSON document, made by orjson in a single C call and taken apart by
  the server (each column cast to its type there, JSON columns kept as JSON);
* SQLite: one prepared ``INSERT … VALUES (?, …)`` run by the driver's ``executemany``
  (a loop in C; SQLite has no network round trip to save), the values passed through
  each column type's own bind processor.

Either way what is stored is what the ORM would have stored: UTC timestamps, JSON
documents (a Python ``None`` in a JSON column is SQL NULL), booleans.

Columns named in ``epoch`` carry epoch seconds (floats) instead of datetimes: the
intake thinks in device time as floats, and converting on the server
(``to_timestamp``) spares a ``datetime`` per value; on SQLite they are converted here.
Rows of one call must not repeat a conflict key when the conflict updates.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    Integer,
    String,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session
from sqlalchemy.sql import FromClause

Processor = Callable[[Any], Any] | None


def _pg_type(type_: Any) -> str:
    """The PostgreSQL type a column's values are read as from the JSON document."""
    t = type_.impl if isinstance(type_, TypeDecorator) else type_
    if isinstance(t, JSON):
        return "json"
    if isinstance(t, DateTime):
        return "timestamptz" if t.timezone else "timestamp"
    if isinstance(t, Date):
        return "date"
    if isinstance(t, Boolean):
        return "boolean"
    if isinstance(t, BigInteger):
        return "bigint"
    if isinstance(t, Integer):
        return "integer"
    if isinstance(t, Float):
        return "float8"
    if isinstance(t, String | Text):
        return "text"
    raise TypeError(f"no PostgreSQL type for {type_!r}")


def _quote(dialect: Dialect, name: str) -> str:
    return str(dialect.identifier_preparer.quote(name))


def _is_json(type_: Any) -> bool:
    return isinstance(type_.impl if isinstance(type_, TypeDecorator) else type_, JSON)


def _merge_sql(dialect: Dialect, old: str, new: str) -> str:
    """SQL for the JSON object ``old`` with the keys of ``new`` set over it (``new`` NULL:
    ``old`` unchanged; ``old`` NULL or not an object: ``new``)."""
    if dialect.name == "postgresql":
        return (f"CASE WHEN {new} IS NULL THEN {old} "
                f"WHEN {old} IS NULL OR json_typeof({old}) <> 'object' THEN {new} "
                f"ELSE ({old}::jsonb || {new}::jsonb)::json END")
    # RFC 7396 merge patch: a target that is not an object is replaced by the patch.
    return f"CASE WHEN {new} IS NULL THEN {old} ELSE json_patch(coalesce({old}, 'null'), {new}) END"


@lru_cache(maxsize=64)
def _plan(
    table: Table, cols: tuple[str, ...], key: tuple[str, ...], update: tuple[str, ...],
    add: tuple[str, ...], keep: tuple[str, ...], merge: tuple[str, ...],
    epoch: tuple[str, ...], returning: tuple[str, ...], dialect: Dialect,
) -> tuple[str, list[Processor], list[Processor]]:
    def q(n: str) -> str:
        return _quote(dialect, n)

    name = q(table.name)
    col_list = ", ".join(q(c) for c in cols)
    binds: list[Processor] = []
    if dialect.name == "postgresql":
        exprs, defs = [], []
        for c in cols:
            if c in epoch:
                defs.append(f"{q(c)} float8")
                exprs.append(f"to_timestamp(x.{q(c)})")
            else:
                defs.append(f"{q(c)} {_pg_type(table.c[c].type)}")
                exprs.append(f"x.{q(c)}")
        sql = (f"INSERT INTO {name} ({col_list}) SELECT {', '.join(exprs)} "
               f"FROM json_to_recordset(%(rows)s::json) AS x({', '.join(defs)})")
    else:
        sql = f"INSERT INTO {name} ({col_list}) VALUES ({', '.join('?' for _ in cols)})"
        for c in cols:
            type_ = table.c[c].type
            p: Processor = type_.dialect_impl(dialect).bind_processor(dialect)
            if c in epoch:
                p = _from_epoch(p)
            binds.append(p)
    if key:
        sets = [f"{q(c)} = excluded.{q(c)}" for c in update]
        sets += [f"{q(c)} = {name}.{q(c)} + excluded.{q(c)}" for c in add]
        sets += [f"{q(c)} = coalesce(excluded.{q(c)}, {name}.{q(c)})" for c in keep]
        sets += [f"{q(c)} = {_merge_sql(dialect, f'{name}.{q(c)}', f'excluded.{q(c)}')}"
                 for c in merge]
        target = ", ".join(q(c) for c in key)
        sql += (f" ON CONFLICT ({target}) DO UPDATE SET {', '.join(sets)}" if sets
                else f" ON CONFLICT ({target}) DO NOTHING")
    if returning:
        sql += " RETURNING " + ", ".join(q(c) for c in returning)
    results: list[Processor] = [
        table.c[c].type.dialect_impl(dialect).result_processor(dialect, None) for c in returning]
    return sql, binds, results


def _from_epoch(p: Processor) -> Processor:
    def bind(v: Any) -> Any:
        dt = datetime.fromtimestamp(v, UTC)
        return dt if p is None else p(dt)

    return bind


def _default(value: Any) -> Any:
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(value: Any) -> bytes:
    """``value`` as compact JSON (orjson: datetimes as RFC 3339, tuples as arrays)."""
    return orjson.dumps(value, default=_default, option=orjson.OPT_NON_STR_KEYS)


def upsert(
    session: Session,
    table: FromClause,
    rows: Sequence[Mapping[str, Any]],
    *,
    key: Sequence[str] = (),
    update: Sequence[str] = (),
    add: Sequence[str] = (),
    keep: Sequence[str] = (),
    merge: Sequence[str] = (),
    epoch: Sequence[str] = (),
    returning: Sequence[str] = (),
) -> list[tuple[Any, ...]]:
    """Insert ``rows`` (dicts with the same keys). With ``key``, on a conflict on those
    columns: set the ``update`` columns to the new values, add the new values to the
    ``add`` columns, set the ``keep`` columns to the new value unless it is NULL, and
    set the keys of the new JSON object over the old one in the ``merge`` columns — or,
    with none of these, do nothing. ``epoch`` names timestamp columns given as epoch
    seconds. Returns the ``returning`` columns of the rows written (on a conflict with
    DO NOTHING: of the new rows only)."""
    if not rows:
        return []
    conn = session.connection()
    dialect = conn.dialect
    cols = tuple(rows[0])
    assert isinstance(table, Table)
    sql, binds, results = _plan(table, cols, tuple(key), tuple(update), tuple(add),
                                tuple(keep), tuple(merge), tuple(epoch), tuple(returning),
                                dialect)
    if dialect.name == "postgresql":
        doc = dumps(rows).decode()
        result = conn.exec_driver_sql(sql, {"rows": doc})
        raw = result.all() if returning else []
    else:
        params = [tuple(v if v is None or p is None else p(v)
                        for p, v in zip(binds, (r[c] for c in cols), strict=True))
                  for r in rows]
        if returning:  # sqlite3 cannot return rows from executemany
            raw = []
            for p in params:
                raw.extend(conn.exec_driver_sql(sql, p).all())
        else:
            conn.exec_driver_sql(sql, params)
            raw = []
    if not raw:
        return []
    return [tuple(f(v) if f is not None else v for f, v in zip(results, r, strict=True))
            for r in raw]
