"""Bulk SQL for the hot paths (event batches, syncs), below the ORM.

Django's ``bulk_create`` / ``bulk_update`` and ``__in`` lookups build and compile one SQL expression per row
or per value, which dominated batch time (measured: 0.3 s of a 1.3 s batch for 2,000 events went to compiling
``bulk_create``). These helpers send plain statements. On PostgreSQL each is one statement whatever the
number of rows: COPY for inserts, ``unnest`` of one typed array per column for upserts, updates and deletes,
``= ANY(...)`` of one array for id lists. Elsewhere (SQLite) they run one prepared statement per row
(``executemany``). They run on the Django connection, inside the caller's transaction.

On PostgreSQL, statements are bound on the server and arrays and COPY rows travel in binary (Django's
default client-side binding quotes every array element in Python: 15 ms for three 2,000-element arrays
against 4 ms in binary; a binary COPY row costs a fifth of a text one; the arrays of numbers and timestamps are
packed by ``pg_arrays``, not element by element in Python), updates and deletes also match their
first key column with ``= ANY`` (without it the planner joins the unnested rows with a scan of the whole table
once they number in the hundreds: 170 ms against 11 ms to delete 1,000 memberships, and growing with the
table), and results come back in binary, loaded in C (Django's own timestamp loader, in Python, took 8x longer
than psycopg's).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from django.db import connection
from django.db.backends.utils import CursorWrapper
from django.db.models import Field, Model
from django.utils.dateparse import parse_datetime
from psycopg import Cursor as ServerBindingCursor
from psycopg.abc import RV, PQGen
from psycopg.copy import LibpqWriter
from psycopg.generators import copy_end
from psycopg.pq import Format, PipelineStatus
from psycopg.waiting import Ready, Wait

from groups_consumer import pg_arrays

#: Ids per ``IN (...)`` list where arrays are not available (SQLite): under its parameter limit.
IN_CHUNK = 2000
#: The work ``filling_waits`` gives the waits for PostgreSQL's answers.
_WAIT_WORK: ContextVar[Callable[[], bool] | None] = ContextVar("wait_work", default=None)


def quote(name: str) -> str:
    """A quoted identifier."""
    return connection.ops.quote_name(name)


def is_postgres() -> bool:
    """True on PostgreSQL."""
    return connection.vendor == "postgresql"


def insert(model: type[Model], columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Insert rows (datetimes through ``db_datetime``): COPY on PostgreSQL (one INSERT of arrays inside
    ``overlapping``, where COPY cannot run)."""
    table, names = _table_and_columns(model, columns)
    if is_postgres() and _overlapping():
        if rows := list(rows):
            _execute(f"INSERT INTO {table} ({names}) SELECT * FROM {_unnest(model, columns)}",
                     _arrays_of(model, columns, rows))
        return
    if is_postgres():
        copy_sql = f"COPY {table} ({names}) FROM STDIN (FORMAT BINARY)"
        with cursor() as db, connection.wrap_database_errors, \
                db.cursor.copy(copy_sql, writer=_copy_writer(db.cursor)) as copy:
            copy.set_types([_type(model, c) for c in columns])
            for row in rows:
                copy.write_row(row)
        return
    _executemany(f"INSERT INTO {table} ({names}) VALUES ({_marks(columns)})", list(rows))


def insert_with_ids(model: type[Model], columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[int]:
    """Insert rows like ``insert`` and give their ids, in the order of ``rows``, increasing.

    On PostgreSQL the ids are drawn from the table's sequence first (one statement; the sequence is looked up
    once, in a materialized CTE: called per row, ``pg_get_serial_sequence`` took 10 of the 13 ms that drawing
    5,500 ids took), then the rows are copied with them. On SQLite the transaction holds the database's write
    lock (transactions begin IMMEDIATE), so the rows just inserted are the table's last ``len(rows)``.
    """
    if not rows:
        return []
    table = quote(model._meta.db_table)
    pk = _column(model, model._meta.pk.name)
    if is_postgres():
        with cursor() as db:
            db.execute("WITH s AS MATERIALIZED (SELECT pg_get_serial_sequence(%s, %s)::regclass AS seq) "
                       "SELECT nextval(s.seq) FROM s, generate_series(1, %s) ORDER BY 1",
                       [model._meta.db_table, pk, len(rows)])
            ids = [row[0] for row in db.fetchall()]
        insert(model, [model._meta.pk.name, *columns], ((id_, *row) for id_, row in zip(ids, rows, strict=True)))
        return ids
    insert(model, columns, rows)
    with cursor() as db:
        db.execute(f"SELECT {quote(pk)} FROM {table} ORDER BY {quote(pk)} DESC LIMIT %s", [len(rows)])
        return sorted(row[0] for row in db.fetchall())


def insert_ignoring_conflicts(model: type[Model], columns: Sequence[str], rows: Sequence[Sequence[Any]],
                              returning: Sequence[str] = ()) -> list[tuple[Any, ...]]:
    """Insert rows, skipping those that clash with a unique constraint (existing rows are left as they are).

    With ``returning``, gives those columns of the rows inserted, on PostgreSQL (elsewhere: nothing; callers
    read back whatever was not returned).
    """
    table, names = _table_and_columns(model, columns)
    if is_postgres() and rows:
        back = f" RETURNING {', '.join(quote(_column(model, c)) for c in returning)}" if returning else ""
        with cursor() as db:
            return _run(db, f"INSERT INTO {table} ({names}) SELECT * FROM {_unnest(model, columns)} "
                            f"ON CONFLICT DO NOTHING{back}", _arrays_of(model, columns, rows), fetch=bool(returning))
    _executemany(f"INSERT INTO {table} ({names}) VALUES ({_marks(columns)}) ON CONFLICT DO NOTHING", rows)
    return []


def update(model: type[Model], key: Sequence[str], columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """``UPDATE model SET columns WHERE key`` for each row of ``columns`` values followed by ``key`` values.

    The first key column should be selective (indexed, few rows per value): see the module docstring.
    """
    table = quote(model._meta.db_table)
    if is_postgres() and rows:
        names = [*columns, *key]
        assignments = ", ".join(f"{quote(_column(model, c))} = v.{quote(c)}" for c in columns)
        _execute(f"UPDATE {table} SET {assignments} FROM {_unnest(model, names)} "
                 f"AS v({', '.join(map(quote, names))}) WHERE {_join_on(model, key)}",
                 [*_arrays_of(model, names, rows), _keys_of(model, key[0], {row[len(columns)] for row in rows})])
    else:
        assignments = ", ".join(f"{quote(_column(model, c))} = %s" for c in columns)
        condition = " AND ".join(f"{quote(_column(model, k))} = %s" for k in key)
        _executemany(f"UPDATE {table} SET {assignments} WHERE {condition}", rows)


def delete(model: type[Model], key: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Delete the rows whose ``key`` columns equal each of ``rows``; the first key column should be selective."""
    table = quote(model._meta.db_table)
    if is_postgres() and rows:
        _execute(f"DELETE FROM {table} USING {_unnest(model, key)} AS v({', '.join(map(quote, key))}) "
                 f"WHERE {_join_on(model, key)}",
                 [*_arrays_of(model, key, rows), _keys_of(model, key[0], {row[0] for row in rows})])
    else:
        _executemany(f"DELETE FROM {table} WHERE {' AND '.join(f'{quote(_column(model, k))} = %s' for k in key)}",
                     rows)


def _join_on(model: type[Model], key: Sequence[str]) -> str:
    """The rows of the table matching the unnested rows ``v``, found through the first key column's index."""
    table = quote(model._meta.db_table)
    first = _column(model, key[0])
    return " AND ".join([*(f"{table}.{quote(_column(model, k))} = v.{quote(k)}" for k in key),
                         f"{table}.{quote(first)} = ANY(%b::{_type(model, key[0])}[])"])


def _field(model: type[Model], name: str) -> Field[Any, Any]:
    field = model._meta.get_field(name)
    if not isinstance(field, Field):  # a reverse relation or a generic foreign key has no column
        raise TypeError(f"{model.__name__}.{name} is not a column")
    return field


def _column(model: type[Model], name: str) -> str:
    column = _field(model, name).column
    if column is None:
        raise TypeError(f"{model.__name__}.{name} is not a column")
    return column


def _table_and_columns(model: type[Model], columns: Sequence[str]) -> tuple[str, str]:
    return quote(model._meta.db_table), ", ".join(quote(_column(model, c)) for c in columns)


def _type(model: type[Model], column: str) -> str:
    db_type = _field(model, column).db_type(connection)
    if db_type is None:
        raise TypeError(f"{model.__name__}.{column} has no database type")
    return db_type.split("(")[0]


def _unnest(model: type[Model], columns: Sequence[str]) -> str:
    """``unnest(%b::type[], ...)``: one binary array parameter per column, typed like the column."""
    return f"unnest({', '.join(f'%b::{_type(model, c)}[]' for c in columns)})"


def _arrays_of(model: type[Model], columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[Any]:
    """One array parameter per column of ``rows`` (values of ``columns``), for ``_unnest``."""
    values = zip(*rows, strict=True) if rows else [() for _ in columns]
    return [_array(column, _type(model, name)) for name, column in zip(columns, values, strict=True)]


def _array(values: Sequence[Any], pg_type: str) -> Any:
    """An array parameter: packed by ``pg_arrays`` (which takes ints among floats), else a list psycopg can
    dump (``_uniform``)."""
    packed = pg_arrays.array(values, pg_type)
    return _uniform(packed) if isinstance(packed, list) else packed


def _keys_of(model: type[Model], column: str, keys: Iterable[Any]) -> Any:
    """The array parameter of ``_join_on``'s ``= ANY``: the distinct values of ``column``."""
    return _array(list(keys), _type(model, column))


def _uniform(values: Sequence[Any]) -> list[Any]:
    """The values as a list psycopg can send (it refuses a list mixing Python types): ints among floats become
    floats, and ``str`` subclasses (choices) plain strings."""
    kinds = set(map(type, values))
    kinds.discard(type(None))
    if len(kinds) > 1:
        if kinds <= {int, float}:
            return [None if value is None else float(value) for value in values]
        if all(issubclass(kind, str) for kind in kinds):
            return [None if value is None else str(value) for value in values]
    return list(values)


def prefer_index_scans() -> None:
    """Tell PostgreSQL, for the rest of the current transaction, to reach rows through indexes.

    For transactions whose statements all look rows up by key (an event batch): with a few thousand keys the
    planner's default costs pick a scan of the whole table (45 ms against 10 ms for the course rows of 2,000
    users among 100,000, and growing with the table), which would make the cost of an event grow with the
    population.
    """
    if is_postgres():
        _execute("SET LOCAL enable_seqscan = off", [])


def plan_for_ranges() -> None:
    """Tell PostgreSQL, for the rest of the current transaction, how to plan a statement over one user range
    (a full sync's range: ``engine.range_differences``).

    What such a statement reads of each table is the rows of one range of users, which its first subquery
    brings into memory for the others. At the default cost of a random read (4x a sequential one), the
    planner reads every user of the range for each group instead of probing the few users a course subquery
    gives (measured: about 9 ms against 3 ms per course group, for a range of 20,000 users among a million).
    And a statement with many groups adds up to a cost at which PostgreSQL compiles it to machine code first
    (JIT): measured for 50 groups on a range of 50,000 users, 2.2 to 3.3 s with it, 0.8 to 1.0 s without.
    """
    if is_postgres():
        _execute("SELECT set_config('random_page_cost', '1.1', true), set_config('jit', 'off', true)", [])


#: A table is analyzed again once a writer changed at least this fraction of the rows PostgreSQL last counted
#: in it (autovacuum's default analyze scale factor).
STALE_STATISTICS_FRACTION = 0.1


def refresh_statistics(model: type[Model], changed_rows: int) -> bool:
    """``ANALYZE`` ``model``'s table when ``changed_rows`` (rows just inserted or deleted by a bulk writer) is
    at least ``STALE_STATISTICS_FRACTION`` of the rows PostgreSQL last counted in it, or it was never counted.
    Returns whether it did.

    For writers that change a large part of a table at once (a first sync writes every membership): the event
    path's statements are planned from these statistics, and without them PostgreSQL guesses. Measured after a
    first sync of 100,000 users with no statistics of the memberships (autovacuum off, or not yet run): the
    batch's read of its users' memberships scanned the whole (group, user) index, 31 to 35 ms per batch of
    2,000 events, against 11 ms once analyzed. ``ANALYZE`` reads a sample of at most 30,000 rows, whatever the
    table's size, and does not block reads or writes.
    """
    if not is_postgres() or changed_rows <= 0:
        return False
    table = quote(model._meta.db_table)
    with cursor() as db:
        db.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [table])
        [(counted,)] = db.fetchall()
        if counted >= 0 and changed_rows < STALE_STATISTICS_FRACTION * counted:
            return False
        db.execute(f"ANALYZE {table}")
    return True


@contextmanager
def overlapping() -> Iterator[None]:
    """Statements run inside are sent without waiting for their answers (libpq's pipeline mode, on
    PostgreSQL; elsewhere nothing changes): a write whose result nobody reads runs in the server while the
    process goes on, and the first statement whose rows are read (``fetchall``) waits for the answers of every
    statement sent before it, then its own. Leaving the block waits for every answer; an error of a statement
    is raised there, or at the first read after it, as Django's database errors are.

    For an event batch: its facts' writes run while it routes and evaluates (``pipeline.batch``; measured in
    docs/event-path.rst: about a tenth of a batch's time at 100,000 users, a sixth to a quarter at a million).
    Inside, a statement's ``rowcount`` is not known until its answer is read, and server-side cursors
    (``QuerySet.iterator()`` on PostgreSQL) cannot be opened.
    """
    if not is_postgres():
        yield
        return
    connection.ensure_connection()
    with connection.wrap_database_errors, connection.connection.pipeline():
        yield


def _overlapping() -> bool:
    """True inside ``overlapping``."""
    return connection.connection is not None and connection.connection.pgconn.pipeline_status != PipelineStatus.OFF


@contextmanager
def filling_waits(work: Callable[[], bool] | None) -> Iterator[None]:
    """Inside, while a statement waits for PostgreSQL's answer (reads by id, updates, deletes, inserts; not a
    write sent without waiting inside ``overlapping``), the process calls
    ``work`` (a step of something that needs no database, returning False when it has nothing left) until the
    answer has arrived, instead of sleeping on the socket. Elsewhere than on PostgreSQL, or with no ``work``,
    nothing changes.

    For an event batch: the consumer decodes the next batch in its waits (``pipeline.polled``).
    """
    token = _WAIT_WORK.set(work)
    try:
        yield
    finally:
        _WAIT_WORK.reset(token)


@contextmanager
def _pipelined() -> Iterator[None]:
    """Pipeline mode for the statements inside (it is already on inside ``overlapping``)."""
    if _overlapping():
        yield
        return
    with connection.wrap_database_errors, connection.connection.pipeline():
        yield


def _fill_wait(work: Callable[[], bool]) -> None:
    """Call ``work`` until the answer of the statement just sent in pipeline mode has arrived, or ``work`` has
    nothing left."""
    pgconn = connection.connection.pgconn
    pgconn.send_flush_request()  # without it, the server keeps the answer until the pipeline syncs
    while work():
        pgconn.flush()
        pgconn.consume_input()
        if not pgconn.is_busy():
            return


def _copy_writer(db: ServerBindingCursor[Any]) -> LibpqWriter | None:
    """Inside ``filling_waits``, a COPY writer whose wait for the end of the copy (PostgreSQL writing the rows
    and their index entries) does the waits' work; elsewhere None (psycopg's own writer)."""
    work = _WAIT_WORK.get()
    return None if work is None else _WaitFillingWriter(db, work)


class _WaitFillingWriter(LibpqWriter):
    """psycopg's COPY writer, but for the wait for the copy's result, filled with ``work``
    (``filling_waits``).

    psycopg offers no hook for that wait: ``finish`` does what ``LibpqWriter.finish`` does (send the end of the
    copy, read its result, raise its error), with the generator that reads wrapped by ``_filled``. A copy ended
    by an exception goes through psycopg's own ``finish``.
    """

    def __init__(self, db: ServerBindingCursor[Any], work: Callable[[], bool]):
        super().__init__(db)
        self._work = work

    def finish(self, exc: BaseException | None = None) -> None:
        if exc is not None:
            super().finish(exc)
            return
        result = self.connection.wait(_filled(copy_end(self.connection.pgconn, None), self._work))
        self.cursor._results = [result]  # as LibpqWriter.finish does: the cursor's rowcount and status


def _filled(gen: PQGen[RV], work: Callable[[], bool]) -> PQGen[RV]:
    """psycopg's generator ``gen`` (it yields what it waits for and is sent what is ready), but while it waits
    to read, ``work`` runs, one step before each attempt to read, until it has nothing left; then the wait is
    psycopg's again. An attempt to read is non-blocking: the generator consumes what arrived and waits again if
    the answer is not complete."""
    waiting = next(gen)
    while True:
        ready = Ready.R if waiting == Wait.R and work() else (yield waiting)
        try:
            waiting = gen.send(ready)
        except StopIteration as done:
            result: RV = done.value
            return result


@contextmanager
def cursor() -> Iterator[CursorWrapper]:
    """A cursor of the Django connection (its transaction, error wrapping and query logging).

    On PostgreSQL it binds parameters on the server (so arrays go in binary, see the module docstring) and reads
    results in binary (timestamps come aware, in the connection's time zone, which Django sets to UTC).
    """
    if not is_postgres():
        with connection.cursor() as db:
            yield db
        return
    connection.ensure_connection()
    raw = ServerBindingCursor(connection.connection)
    raw.format = Format.BINARY  # results too: binary values load in C, with no parsing
    # django-stubs type the argument as a CursorWrapper; Django wraps the raw DB-API cursor it is given.
    wrapped = (connection.make_debug_cursor(raw) if connection.queries_logged  # type: ignore[arg-type]
               else connection.make_cursor(raw))  # type: ignore[arg-type]
    with wrapped as db:
        yield db


def _marks(columns: Sequence[str]) -> str:
    return ", ".join(["%s"] * len(columns))


def _execute(sql: str, params: Sequence[Any]) -> None:
    with cursor() as db:
        if is_postgres():
            _run(db, sql, params, fetch=False)
        else:
            db.execute(sql, params)


def _run(db: CursorWrapper, sql: str, params: Sequence[Any], *, fetch: bool) -> list[tuple[Any, ...]]:
    """Run one statement on PostgreSQL, and read its rows if ``fetch``. Inside ``filling_waits`` the process does
    the given work until the answer arrives (but for a write inside ``overlapping``, which does not wait)."""
    work = _WAIT_WORK.get()
    if work is None or (not fetch and _overlapping()):
        db.execute(sql, params)
        return db.fetchall() if fetch else []
    with _pipelined():
        db.execute(sql, params)
        _fill_wait(work)
        return db.fetchall() if fetch else []


def _executemany(sql: str, rows: Sequence[Sequence[Any]]) -> None:
    if rows:
        with cursor() as db:
            db.executemany(sql, rows)


def select_where_in(sql: str, column: str, ids: Iterable[int], params: Sequence[Any] = (),
                    suffix: str = "") -> list[tuple[Any, ...]]:
    """Rows of ``sql`` (ending in ``WHERE`` or ``WHERE ... AND``) with ``column`` among ``ids``; ``params``
    fill the placeholders before the id condition, ``suffix`` follows it (``ORDER BY ...``)."""
    return _where_in(sql, column, ids, params, suffix, fetch=True)


def execute_where_in(sql: str, column: str, ids: Iterable[int], params: Sequence[Any] = ()) -> None:
    """Run ``sql`` (an UPDATE or DELETE ending in ``WHERE`` or ``WHERE ... AND``) with ``column`` among ``ids``."""
    _where_in(sql, column, ids, params, "", fetch=False)


def _where_in(sql: str, column: str, ids: Iterable[int], params: Sequence[Any], suffix: str,
              fetch: bool) -> list[tuple[Any, ...]]:
    ids = list(ids)
    rows: list[tuple[Any, ...]] = []
    if not ids:
        return rows
    with cursor() as db:
        if is_postgres():
            return _run(db, f"{sql} {column} = ANY(%b::bigint[]) {suffix}",
                        [*params, pg_arrays.array(ids, "bigint")], fetch=fetch)
        for start in range(0, len(ids), IN_CHUNK):
            chunk = ids[start:start + IN_CHUNK]
            db.execute(f"{sql} {column} IN ({', '.join(['%s'] * len(chunk))}) {suffix}", [*params, *chunk])
            if fetch:
                rows += db.fetchall()
        return rows


def db_datetime(value: datetime | None) -> Any:
    """A datetime as the database takes it in raw statements."""
    return value if value is None or is_postgres() else connection.ops.adapt_datetimefield_value(value)


def py_datetime(value: datetime | str | None) -> datetime | None:
    """A datetime column of a raw row as an aware datetime (SQLite gives naive UTC datetimes or text)."""
    if value is None:
        return None
    parsed = value if isinstance(value, datetime) else parse_datetime(value)
    if parsed is None:
        raise ValueError(f"{value!r} is not a datetime")
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
