"""Strict JSON for every request body and websocket frame (issue 15, defect 6).

Python's json module accepts what browsers' JSON.parse does not (NaN, Infinity, 1e400 read as
inf) and recurses once per nesting level (a 100,000-deep `[` raises RecursionError, a 500).
Here: non-finite numbers and nesting deeper than MAX_JSON_DEPTH are a clear 400 instead."""
from __future__ import annotations

import codecs
import json
import math

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

MAX_JSON_DEPTH = 64  # GeoJSON needs 6 (FeatureCollection > features > Feature > MultiPolygon rings)


class JSONRejected(ValueError):
    """Not strict JSON; the message says why (safe to show to the sender)."""


class NonFiniteNumber(JSONRejected):
    """NaN, Infinity or a float that overflows: valid to Python's json, refused here."""


def _constant(name: str):
    raise NonFiniteNumber(f"{name} is not a number JSON allows (non-finite numbers are refused)")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NonFiniteNumber(f"{text[:40]} is out of range (non-finite numbers are refused)")
    return value


def _depth_check(value, limit: int) -> None:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                raise JSONRejected(f"nested more than {limit} levels deep")
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))


def loads_strict(text: str | bytes, *, max_depth: int = MAX_JSON_DEPTH):
    """json.loads without NaN/Infinity/overflowing floats and with a nesting limit; JSONRejected otherwise."""
    try:
        value = json.loads(text, parse_constant=_constant, parse_float=_finite)
    except RecursionError:
        raise JSONRejected(f"nested more than {max_depth} levels deep") from None
    except JSONRejected:
        raise
    except (ValueError, TypeError) as exc:  # JSONDecodeError, bad UTF-8, too many integer digits
        raise JSONRejected(str(exc)) from None
    _depth_check(value, max_depth)
    return value


class StrictJSONParser(JSONParser):
    """DRF's JSONParser with loads_strict (settings.REST_FRAMEWORK's DEFAULT_PARSER_CLASSES)."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = codecs.getreader(encoding)(stream).read()
            return loads_strict(text)
        except (JSONRejected, UnicodeDecodeError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
