"""What the database actually has: tables, columns, keys, foreign keys and triggers.

Read once per run from pg_catalog (tables visible on the search_path), so the seeder and
cleanup can cope with a real deployment's extra columns, defaults and foreign keys, and so
every identifier that came from a user is checked against it before use.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg2.extensions

from runner.db.connect import autocommitted

_COLUMNS = """
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull,
       (ad.adbin IS NOT NULL OR a.attidentity <> '' OR a.attgenerated <> '') AS has_default, a.attnum
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
WHERE c.relkind IN ('r', 'p') AND pg_table_is_visible(c.oid)
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
"""

_KEYS = """
SELECT con.contype, con.conname, c.relname, r.relname AS ref, con.condeferrable,
       ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(n, i)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.i) AS cols,
       ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(n, i)
             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.i) AS ref_cols
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
LEFT JOIN pg_class r ON r.oid = con.confrelid
WHERE con.contype IN ('p', 'f') AND pg_table_is_visible(c.oid)
  AND (con.contype = 'p' OR pg_table_is_visible(r.oid))
"""

_TRIGGERS = """
SELECT c.relname, t.tgname, p.prosrc
FROM pg_trigger t
JOIN pg_class c ON c.oid = t.tgrelid
JOIN pg_proc p ON p.oid = t.tgfoid
WHERE NOT t.tgisinternal AND pg_table_is_visible(c.oid) AND t.tgenabled <> 'D'
"""

_SNAPSHOT = f"""
SELECT (SELECT coalesce(json_agg(json_build_array(x.relname, x.attname, x.type, x.attnotnull, x.has_default)
                                 ORDER BY x.relname, x.attnum), '[]') FROM ({_COLUMNS}) x),
       (SELECT coalesce(json_agg(json_build_array(x.contype, x.conname, x.relname, x.ref, x.condeferrable, x.cols,
                                                  x.ref_cols)), '[]') FROM ({_KEYS}) x),
       (SELECT coalesce(json_agg(json_build_array(x.relname, x.tgname, x.prosrc)), '[]') FROM ({_TRIGGERS}) x)
"""
"""The three catalog reads as one statement: one round trip, one consistent snapshot."""


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str
    not_null: bool
    has_default: bool

    @property
    def must_be_set(self) -> bool:
        """NOT NULL with no default: an insert that leaves it out fails."""
        return self.not_null and not self.has_default


@dataclass(frozen=True, slots=True)
class ForeignKey:
    name: str
    table: str
    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]
    deferrable: bool


@dataclass(frozen=True, slots=True)
class Trigger:
    table: str
    name: str
    source: str


@dataclass(frozen=True)
class Table:
    name: str
    columns: dict[str, Column]
    primary_key: tuple[str, ...] = ()

    def has(self, column: str) -> bool:
        return column in self.columns


@dataclass(frozen=True)
class Catalog:
    tables: dict[str, Table]
    foreign_keys: tuple[ForeignKey, ...] = ()
    triggers: tuple[Trigger, ...] = field(default=())

    def table(self, name: str) -> Table | None:
        return self.tables.get(name)

    def has(self, table: str, column: str | None = None) -> bool:
        found = self.tables.get(table)
        return found is not None and (column is None or found.has(column))

    def referencing(self, table: str) -> list[ForeignKey]:
        """Foreign keys of other (or the same) tables that point at `table`."""
        return [fk for fk in self.foreign_keys if fk.ref_table == table]

    def triggers_on(self, table: str) -> list[Trigger]:
        return [t for t in self.triggers if t.table == table]

    def notifies(self, table: str, channel: str) -> bool:
        """Whether some trigger on `table` calls pg_notify on `channel`."""
        return any("pg_notify" in t.source and channel in t.source for t in self.triggers_on(table))


def read(conn: psycopg2.extensions.connection) -> Catalog:
    """A snapshot of the visible tables: one statement, committed on its own (no BEGIN, no ROLLBACK sent)."""
    with autocommitted(conn), conn.cursor() as cur:
        return read_in(cur)


def read_in(cur: psycopg2.extensions.cursor) -> Catalog:
    """A snapshot read with an open cursor (inside the caller's transaction, if any), in one round trip."""
    cur.execute(_SNAPSHOT)
    column_rows, keys, trigger_rows = cur.fetchone()
    columns: dict[str, dict[str, Column]] = {}
    for table, name, type_, not_null, has_default in column_rows:
        columns.setdefault(table, {})[name] = Column(name, type_, not_null, has_default)
    triggers = tuple(Trigger(*row) for row in trigger_rows)
    primary = {table: tuple(cols) for kind, _, table, _, _, cols, _ in keys if kind == "p"}
    fks = tuple(
        ForeignKey(name, table, tuple(cols), ref, tuple(ref_cols), deferrable)
        for kind, name, table, ref, deferrable, cols, ref_cols in keys
        if kind == "f"
    )
    tables = {name: Table(name, cols, primary.get(name, ())) for name, cols in columns.items()}
    return Catalog(tables, fks, triggers)
