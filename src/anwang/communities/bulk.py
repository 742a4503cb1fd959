"""Bulk inserts and upserts for the intake's hot path, on PostgreSQL and SQLite.

The intake writes a few thousand rows per batch into a handful of tables. Going through
SQLAlchemy's multi-row ``INSERT … VALUES`` compiles a statement with one bound
parameter per value on every batch, which costs more than the database's work; an
``executemany`` sends one statement per row to PostgreSQL. So this module writes the SQL
once per (table, columns, conflict clause) and sends:

* PostgreSQL: one ``INSERT … SELECT * FROM unnest(%(c0)s::type[], …)`` — one array
  parameter per column, whatever the number of rows;
* SQLite: one prepared ``INSERT … VALUES (?, …)`` run by the driver's ``executemany``
  (a loop in C; SQLite has no network round trip to save).

Values pass through each column type's own bind processor (UTC datetimes, JSON,
booleans), and returned rows through its result processor, so what is stored is exactly
what the ORM would have stored. Rows of one call must not repeat a conflict key.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

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

Processor = Callable[[Any], Any] | None


def _pg_array(type_: Any) -> str:
    """The PostgreSQL array type that carries a column's values."""
    t = type_.impl if isinstance(type_, TypeDecorator) else type_
    if isinstance(t, JSON):
        return "json[]"
    if isinstance(t, DateTime):
        return "timestamptz[]" if t.timezone else "timestamp[]"
    if isinstance(t, Date):
        return "date[]"
    if isinstance(t, Boolean):
        return "boolean[]"
    if isinstance(t, BigInteger):
        return "bigint[]"
    if isinstance(t, Integer):
        return "integer[]"
    if isinstance(t, Float):
        return "float8[]"
    if isinstance(t, String | Text):
        return "text[]"
    raise TypeError(f"no array type for {type_!r}")


def _binder(type_: Any, dialect: Dialect) -> Processor:
    """The column type's bind processor; JSON on PostgreSQL is sent as text (the driver
    would otherwise adapt it per value, which arrays do not allow)."""
    t = type_.impl if isinstance(type_, TypeDecorator) else type_
    if dialect.name == "postgresql" and isinstance(t, JSON):
        dumps = getattr(dialect, "_json_serializer", None) or json.dumps
        return dumps  # type: ignore[no-any-return]
    return type_.dialect_impl(dialect).bind_processor(dialect)  # type: ignore[no-any-return]


def _quote(dialect: Dialect, name: str) -> str:
    return str(dialect.identifier_preparer.quote(name))


@lru_cache(maxsize=64)
def _plan(
    table: Table, cols: tuple[str, ...], key: tuple[str, ...], update: tuple[str, ...],
    add: tuple[str, ...], returning: tuple[str, ...], dialect: Dialect,
    constant: tuple[bool, ...] = (),
) -> tuple[str, list[Processor], list[Processor]]:
    q = lambda n: _quote(dialect, n)  # noqa: E731
    name = q(table.name)
    col_list = ", ".join(q(c) for c in cols)
    if dialect.name == "postgresql":
        # A column with one value for every row is sent once, as a scalar.
        arrays, exprs = [], []
        for i, c in enumerate(cols):
            pg = _pg_array(table.c[c].type)
            if constant and constant[i]:
                exprs.append(f"%(c{i})b::{pg[:-2]}")
            else:
                arrays.append(f"%(c{i})b::{pg}")
                exprs.append(f"u.c{i}")
        names = ", ".join(e[2:] for e in exprs if e.startswith("u."))
        sql = (f"INSERT INTO {name} ({col_list}) SELECT {', '.join(exprs)} "
               f"FROM unnest({', '.join(arrays)}) AS u({names})")
    else:
        sql = f"INSERT INTO {name} ({col_list}) VALUES ({', '.join('?' for _ in cols)})"
    if key:
        sets = [f"{q(c)} = excluded.{q(c)}" for c in update]
        sets += [f"{q(c)} = {name}.{q(c)} + excluded.{q(c)}" for c in add]
        target = ", ".join(q(c) for c in key)
        sql += (f" ON CONFLICT ({target}) DO UPDATE SET {', '.join(sets)}" if sets
                else f" ON CONFLICT ({target}) DO NOTHING")
    if returning:
        sql += " RETURNING " + ", ".join(q(c) for c in returning)
    binds = [_binder(table.c[c].type, dialect) for c in cols]
    results = [table.c[c].type.dialect_impl(dialect).result_processor(dialect, None)
               for c in returning]
    return sql, binds, results


def upsert(
    session: Session,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    key: Sequence[str] = (),
    update: Sequence[str] = (),
    add: Sequence[str] = (),
    returning: Sequence[str] = (),
) -> list[tuple[Any, ...]]:
    """Insert ``rows`` (dicts with the same keys). With ``key``: on a conflict on those
    columns set the ``update`` columns to the new values and add the new values to the
    ``add`` columns — or, with neither, do nothing. Returns the ``returning`` columns of
    the rows written (on a conflict with DO NOTHING: of the new rows only)."""
    if not rows:
        return []
    conn = session.connection()
    dialect = conn.dialect
    cols = tuple(rows[0])
    columns = [[r[c] for r in rows] for c in cols]
    constant: tuple[bool, ...] = ()
    if dialect.name == "postgresql" and len(rows) > 1:
        constant = tuple(all(v is col[0] or v == col[0] for v in col) for col in columns)
        if all(constant):
            constant = (False, *constant[1:])
    sql, binds, results = _plan(table, cols, tuple(key), tuple(update), tuple(add),
                                tuple(returning), dialect, constant)
    values: list[Any] = []
    for i, p in enumerate(binds):
        col = columns[i]
        if constant and constant[i]:
            v = col[0]
            values.append(v if v is None or p is None else p(v))
        elif p is not None:
            values.append([None if v is None else p(v) for v in col])
        else:
            values.append(col)
    if dialect.name == "postgresql":
        result = conn.exec_driver_sql(sql, {f"c{i}": v for i, v in enumerate(values)})
        raw = result.all() if returning else []
    else:
        params = list(zip(*values, strict=True))
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
