"""Array parameters for PostgreSQL, packed in its binary format by C loops (``struct``, ``bytes.join``).

The hot paths send one array per column (``bulk_sql``): about 12 elements per event in an event batch.
psycopg's dumper of a Python list is Python: a pass over the list to find the elements' type, then a loop
dumping each element and packing its length. ``array`` packs the elements of the types those columns have
(integers, floats, booleans, timestamps with time zone) without a Python loop when there is no NULL; any other
element type, or a value of another Python type, is left to psycopg (a plain list is returned).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any, ClassVar, cast

from django.db.backends.base.base import BaseDatabaseWrapper
from psycopg.abc import Buffer
from psycopg.adapt import Dumper, PyFormat, Transformer
from psycopg.pq import Format

_HEAD = struct.Struct(">iiIii")  # dimensions, has NULLs, element oid, then the dimension: length, lower bound
_EMPTY = struct.Struct(">iiI")  # no dimension
_NULL = -1


class PackedArray:
    """A one-dimensional array parameter already in PostgreSQL's binary format; each array type has its own
    subclass (``oid``: the array type's), sent by its own dumper."""

    __slots__ = ("data",)
    oid: ClassVar[int] = 0

    def __init__(self, data: bytes):
        self.data = data


class _PackedArrayDumper(Dumper):
    """Sends a ``PackedArray`` as it is."""

    format = Format.BINARY

    def dump(self, obj: PackedArray) -> Buffer:
        return obj.data


def on_connection_created(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    """Teach each new PostgreSQL connection to send ``PackedArray`` parameters (``connection_created``, connected
    by the app's ``ready``)."""
    if connection.vendor == "postgresql":
        for element in _TYPES.values():
            connection.connection.adapters.register_dumper(element.packed, element.dumper)


def _fixed(code: str, size: int) -> Callable[[Sequence[Any], bool], bytes]:
    """The packer of elements of one fixed size, ``code`` in ``struct``'s notation."""

    def pack(values: Sequence[Any], has_null: bool) -> bytes:
        if not has_null:
            flat: list[Any] = [size] * (2 * len(values))
            flat[1::2] = values
            return struct.pack(">" + ("i" + code) * len(values), *flat)
        with_nulls: list[Any] = []  # the length -1 for a NULL, the size then the value otherwise
        for value in values:
            with_nulls += (_NULL,) if value is None else (size, value)
        return struct.pack(">" + "".join("i" if value is None else "i" + code for value in values), *with_nulls)

    return pack


def _timestamps(values: Sequence[Any], has_null: bool) -> bytes | None:
    """Aware datetimes, each dumped by psycopg's own (C) dumper of ``timestamp with time zone``; None if one is
    naive (psycopg would send it as a ``timestamp`` without time zone)."""
    present = [value for value in values if value is not None] if has_null else values
    if None in set(map(_TZINFO, present)):
        return None
    dump = _DUMP_TIMESTAMPTZ
    if not has_null:
        return _SIZE_8 + _SIZE_8.join(map(dump, values))
    return b"".join(_NULL_LENGTH if value is None else _SIZE_8 + dump(value) for value in values)


_NULL_LENGTH, _SIZE_8 = struct.pack(">i", _NULL), struct.pack(">i", 8)
_TZINFO = attrgetter("tzinfo")
_DUMP_TIMESTAMPTZ = cast(Callable[[datetime], bytes],
                         Transformer().get_dumper(datetime(2000, 1, 1, tzinfo=UTC), PyFormat.BINARY).dump)


@dataclass(frozen=True)
class _ElementType:
    oid: int
    python_types: frozenset[type]  # exactly (a ``bool`` is not taken for an ``int``)
    pack: Callable[[Sequence[Any], bool], bytes | None]
    packed: type[PackedArray]  # its array's parameters
    dumper: type[Dumper]  # theirs


def _element(name: str, oid: int, array_oid: int, python_types: set[type],
             pack: Callable[[Sequence[Any], bool], bytes | None]) -> _ElementType:
    """An element type, with the ``PackedArray`` subclass and dumper of its arrays."""
    title = name.title().replace(" ", "")
    return _ElementType(oid, frozenset(python_types), pack,
                        type(f"Packed{title}Array", (PackedArray,), {"__slots__": (), "oid": array_oid}),
                        type(f"Packed{title}ArrayDumper", (_PackedArrayDumper,), {"oid": array_oid}))


#: By PostgreSQL type (oids of the element and of its array). Strings are left to psycopg: packing them here
#: saved nothing.
_TYPES = {
    "bigint": _element("bigint", 20, 1016, {int}, _fixed("q", 8)),
    "integer": _element("integer", 23, 1007, {int}, _fixed("i", 4)),
    "smallint": _element("smallint", 21, 1005, {int}, _fixed("h", 2)),
    "double precision": _element("double precision", 701, 1022, {float, int}, _fixed("d", 8)),
    "boolean": _element("boolean", 16, 1000, {bool}, _fixed("?", 1)),
    "timestamp with time zone": _element("timestamp with time zone", 1184, 1185, {datetime}, _timestamps),
}


def array(values: Sequence[Any], pg_type: str) -> PackedArray | list[Any]:
    """``values`` as a one-dimensional array parameter of ``pg_type`` elements, for a ``%b`` placeholder cast to
    that array type: packed here for the types of ``_TYPES`` (Python values of the matching type), otherwise a
    list psycopg dumps itself."""
    element = _TYPES.get(pg_type)
    if element is None:
        return list(values)
    if not values:  # no dimension
        return element.packed(_EMPTY.pack(0, 0, element.oid))
    python_types = set(map(type, values))
    has_null = type(None) in python_types
    python_types.discard(type(None))
    if not python_types <= element.python_types or (packed := element.pack(values, has_null)) is None:
        return list(values)
    return element.packed(_HEAD.pack(1, has_null, element.oid, len(values), 1) + packed)
