"""PostgreSQL values as agents already read them (node-postgres's shapes), and agents' JSON values as the
statement's parameters.

Out: int8 and numeric as strings (their text form, exactly), timestamps ISO-8601 UTC, dates `YYYY-MM-DD`,
json and jsonb as JSON, arrays as lists, bytea as `\\x…`, intervals in PostgreSQL's text form. In: each
parameter converted for the type PostgreSQL inferred for its `$n` (a JSON string "42" binds an integer, as
node-postgres's text parameters did); a value that does not fit is -32602 naming the parameter."""

from __future__ import annotations

import datetime
import decimal
import ipaddress
import json
import math
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from gateway_core.errors import InvalidParams

# Types whose values cross as PostgreSQL's own text (both ways): their text form is what agents read.
TEXT_CODEC_TYPES = ("int8", "numeric", "interval", "money", "date", "uuid", "record")
TIMESTAMP_TYPES = ("timestamptz", "timestamp")
# Each pooled connection's session: timestamps written in ISO form and in UTC, so that their text is cut into the
# agents' form without a datetime in between (asyncpg's binary timestamps and their conversion took a fifth of a
# 1,000-row query's time). Set at connection start: the pool's RESET ALL on release returns to these, whatever a
# statement SET.
SESSION_SETTINGS = {"DateStyle": "ISO, MDY", "TimeZone": "UTC"}


# A digit run orjson could read as an integer past 64 bits, which it turns into a float: json keeps it whole.
_LONG_DIGITS = re.compile(r"\d{19}").search


def _json_loads(text: str) -> Any:
    """A json/jsonb value: orjson's parse (a quarter of json.loads' time, a thousand of them in a 1,000-row
    result), the standard library's where orjson would round an integer or refuses (json keeps a lone surrogate)."""
    if _LONG_DIGITS(text) is None:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


def _json_text(value: Any) -> str:
    """A json/jsonb parameter: a string is taken as JSON text already (as node-postgres sent it)."""
    return value if isinstance(value, str) else json.dumps(value)


async def prepare_connection(connection: Any) -> None:
    """Codecs for a new pooled connection (asyncpg's `init`): text forms and JSON."""
    for type_name in TEXT_CODEC_TYPES:
        await connection.set_type_codec(type_name, schema="pg_catalog", encoder=str, decoder=str, format="text")
    for type_name in TIMESTAMP_TYPES:
        await connection.set_type_codec(type_name, schema="pg_catalog", encoder=str, decoder=timestamp_text,
                                        format="text")
    for type_name in ("json", "jsonb"):
        await connection.set_type_codec(type_name, schema="pg_catalog", encoder=_json_text, decoder=_json_loads)


# -- results ---------------------------------------------------------------------------------------


def _iso_utc(moment: datetime.datetime) -> str:
    """As JavaScript's toISOString (what node-postgres's agents read), microseconds kept when there are any; a
    naive moment is taken as UTC."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(datetime.UTC).replace(tzinfo=None)
    text = moment.isoformat(timespec="microseconds")
    return (text[:23] if moment.microsecond % 1000 == 0 else text) + "Z"


def timestamp_text(text: str) -> str:
    """A timestamp as PostgreSQL writes it in the session above ("2024-05-06 07:08:09.5+00", no offset when it has
    no zone) in toISOString's form ("2024-05-06T07:08:09.500Z"). Another offset (a session whose TimeZone was
    changed) is converted; what has no such form (infinity, a BC or five-digit year) is kept as PostgreSQL's text."""
    stamp = text.removesuffix("+00")
    fraction = stamp[20:]
    if (len(stamp) < 19 or stamp[10] != " " or stamp[4] != "-"
            or (len(stamp) > 19 and (stamp[19] != "." or not fraction.isdigit()))):
        try:
            return _iso_utc(datetime.datetime.fromisoformat(text))
        except ValueError:
            return text
    if not fraction:
        return f"{stamp[:10]}T{stamp[11:]}.000Z"
    fraction = fraction.ljust(6, "0")
    return f"{stamp[:10]}T{stamp[11:19]}.{fraction[:3] if fraction.endswith('000') else fraction}Z"


def json_value(value: Any) -> Any:
    """One decoded value as JSON (the codecs above already gave int8, numeric, interval and json their form)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)  # NaN, Infinity: JSON has no such numbers
    if isinstance(value, datetime.datetime):
        return _iso_utc(value)
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, bytes):
        return "\\x" + value.hex()
    if isinstance(value, decimal.Decimal):
        return format(value, "f")
    if isinstance(value, list | tuple):
        return [json_value(item) for item in value]
    if isinstance(value, dict):
        return {str(key): json_value(item) for key, item in value.items()}
    if isinstance(value, Mapping):  # a composite (row) value
        return {str(key): json_value(item) for key, item in value.items()}
    from asyncpg.types import Range  # loaded already: the value came from asyncpg

    if isinstance(value, Range):
        return _range_text(value)
    return str(value)  # inet, geometric types: their text


def _range_text(value: Any) -> str:
    """A range as PostgreSQL writes it (`[1,5)`, `(,3]`, `empty`), as node-postgres gave it."""
    if value.isempty:
        return "empty"
    lower = "" if value.lower_inf else json_value(value.lower)
    upper = "" if value.upper_inf else json_value(value.upper)
    return f"{'[' if value.lower_inc else '('}{lower},{upper}{']' if value.upper_inc else ')'}"


def json_row(record: Any) -> dict[str, Any]:
    """An asyncpg Record (or any mapping of column to value) as a JSON object."""
    return {key: json_value(value) for key, value in record.items()}


# Columns whose decoded values already are their JSON form (the codecs above included): nothing to convert.
_DECODED_AS_JSON = frozenset({"bool", "int2", "int4", "oid", "text", "varchar", "bpchar", "name", "json", "jsonb",
                              *TEXT_CODEC_TYPES, *TIMESTAMP_TYPES})
ColumnConverter = Callable[[Any], Any] | None  # None: the value as decoded


def _single_character(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def column_converter(type_name: str, kind: str = "scalar") -> ColumnConverter:
    """How one result column's values become JSON, chosen once per statement rather than per value: a result of
    a thousand rows is most of a query's cost in the gateway otherwise."""
    if type_name in _DECODED_AS_JSON or (kind == "array" and type_name.removesuffix("[]") in _DECODED_AS_JSON):
        return None  # an array of such values decodes as (nested) lists of them
    if type_name == "char":  # asyncpg gives "char" as bytes (and keeps its own codec for it), but it is text
        return _single_character
    return json_value


def json_rows_of(columns: Sequence[tuple[str, ColumnConverter]]) -> Callable[[Sequence[Any]], list[dict[str, Any]]]:
    """A function making the rows' JSON objects from Records whose columns are `columns`: the values as decoded,
    then the converting columns converted (of columns sharing a name, the last one is the row's, as in a dict).
    Row objects are made in one comprehension and converted a column at a time: for 1,000 rows this takes 0.6 ms
    where a function called for each row took 1.0."""
    names = tuple(name for name, _ in columns)
    converting = [(name, convert) for name, convert in dict(columns).items() if convert is not None]

    def rows(records: Sequence[Any]) -> list[dict[str, Any]]:
        made = [dict(zip(names, record, strict=True)) for record in records]
        for name, convert in converting:
            for values in made:
                value = values[name]
                if value is not None:
                    values[name] = convert(value)
        return made
    return rows


# -- parameters ------------------------------------------------------------------------------------


def _integer(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("a boolean is not an integer")
    if isinstance(value, float) and not value.is_integer():
        raise ValueError("not a whole number")
    return int(value)


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "t", "yes", "y", "on", "1"):
        return True
    if text in ("false", "f", "no", "n", "off", "0"):
        return False
    raise ValueError("not a boolean")


def _timestamp(value: Any) -> datetime.datetime:
    moment = datetime.datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=datetime.UTC)


def _naive_timestamp(value: Any) -> datetime.datetime:
    moment = datetime.datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    return moment.astimezone(datetime.UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _date(value: Any) -> datetime.date:
    return datetime.date.fromisoformat(str(value).strip())


def _time(value: Any) -> datetime.time:
    return datetime.time.fromisoformat(str(value).strip())


def _uuid(value: Any) -> uuid.UUID:
    return uuid.UUID(str(value))


def _network(value: Any) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    return ipaddress.ip_interface(str(value))


def _as_given(value: Any) -> Any:
    return value


def _bytea(value: Any) -> bytes:
    text = str(value)
    return bytes.fromhex(text[2:]) if text.startswith("\\x") else text.encode()


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value) if isinstance(value, dict | list) else str(value)


PARAMETER_CONVERSIONS: dict[str, Callable[[Any], Any]] = {
    **dict.fromkeys(("int2", "int4", "oid"), _integer),
    **dict.fromkeys(("float4", "float8"), float),
    "bool": _boolean,
    "date": _date,
    "time": _time,
    "timestamptz": _timestamp,
    "timestamp": _naive_timestamp,
    "uuid": _uuid,
    "bytea": _bytea,
    **dict.fromkeys(("inet", "cidr"), _network),
    **dict.fromkeys(("json", "jsonb"), _as_given),  # the codec takes any JSON value
}


def _converted(type_name: str, kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind == "array" or type_name.endswith("[]"):
        if not isinstance(value, list):
            raise ValueError("an array parameter takes a list")
        return [_converted(type_name.removesuffix("[]"), "scalar", item) for item in value]
    conversion: Callable[[Any], Any] = PARAMETER_CONVERSIONS.get(type_name, _text)
    return conversion(value)


def bind_parameters(parameter_types: Sequence[Any], values: Sequence[Any]) -> list[Any]:
    """The agent's values, converted for each `$n`'s type (asyncpg `Type`s: `.name`, `.kind`)."""
    expected = len(parameter_types)
    if len(values) != expected:
        raise InvalidParams(
            f"Invalid arguments: the statement takes {expected} parameter(s) ($1..${expected}), got {len(values)}",
            {"errors": [{"field": "params", "message": f"expected {expected} parameters, got {len(values)}",
                         "type": "parameter_count"}]})
    bound = []
    for position, (parameter_type, value) in enumerate(zip(parameter_types, values, strict=True), start=1):
        try:
            bound.append(_converted(parameter_type.name, parameter_type.kind, value))
        except (ValueError, TypeError, OverflowError, decimal.InvalidOperation):
            raise InvalidParams(
                f"Invalid arguments: parameter ${position} is not a valid {parameter_type.name}",
                {"errors": [{"field": f"params.{position - 1}", "message": f"${position}: expected "
                                                                            f"{parameter_type.name}",
                             "type": "parameter_type"}]}) from None
    return bound
