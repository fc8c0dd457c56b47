"""Limit/offset pages with a ceiling on the page size.

DRF's LimitOffsetPagination takes any `limit` when `max_limit` is unset, and a limit beyond a
64-bit integer reaches the database as an overflow (a 500 from SQLite; API fuzzing found it:
tests/viewer/api/test_schemathesis.py). A larger limit is cut to MAX_LIMIT, as DRF documents for
`max_limit`; offsets need no ceiling (DRF answers an offset past the count with an empty page
without querying)."""
from __future__ import annotations

from rest_framework.pagination import LimitOffsetPagination

MAX_LIMIT = 1000


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    max_limit = MAX_LIMIT
