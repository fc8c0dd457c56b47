"""Query parameters checked before they reach a query: a bad one is a 400 naming it, never a 500."""
from __future__ import annotations

import re

from rest_framework.exceptions import ValidationError

MAX_PK = 2 ** 63 - 1  # the largest id a 64-bit primary key holds (SQLite and PostgreSQL)
_DIGITS = re.compile(r"[0-9]{1,19}")  # ASCII only: str.isdigit() also accepts '²', which int() refuses


def ascii_int(value: str | None, *, maximum: int = MAX_PK) -> int | None:
    """`value` as an int when it is 1-19 ASCII digits and at most `maximum`, else None."""
    if value is None or not _DIGITS.fullmatch(value):
        return None
    number = int(value)
    return number if number <= maximum else None


def query_pk(request, name: str) -> int | None:
    """The id in ?name= (None when absent or empty); ValidationError when it is not one."""
    value = request.query_params.get(name, "")
    if value == "":
        return None
    number = ascii_int(value)
    if number is None or number < 1:
        raise ValidationError({name: [f"An id (a positive integer) is required, not {value[:40]!r}."]})
    return number


def query_choice(request, name: str, choices) -> str | None:
    value = request.query_params.get(name, "")
    if value == "":
        return None
    if value not in choices:
        raise ValidationError({name: [f"One of {', '.join(choices)}; not {value[:40]!r}."]})
    return value
