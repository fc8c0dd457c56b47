"""Job kinds -> handler functions. A handler gets the Job and a JobContext."""
from __future__ import annotations

from typing import Callable

HANDLERS: dict[str, Callable] = {}


def job_handler(kind: str):
    def register(func: Callable) -> Callable:
        HANDLERS[kind] = func
        return func

    return register
