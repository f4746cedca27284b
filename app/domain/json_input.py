"""Parsing JSON that users upload (JSONL rows, Label Studio and Prodigy exports), with bounds.

Python's decoder recurses once per nesting level, so a line of 100,000 ``[`` would end in a
``RecursionError`` deep inside the import; and integers of thousands of digits raise a plain
``ValueError``. :func:`parse_json` measures the nesting depth *before* decoding, without
recursion, and turns every failure into :class:`JsonInputError` with a message for the report.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_JSON_DEPTH = 64
"""Deepest nesting accepted in uploaded JSON; real exports stay under ten levels."""

_STRING_OR_BRACKET = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


class JsonInputError(ValueError):
    """Uploaded JSON that cannot be used; ``offset`` is where the problem is (-1: unknown)."""

    def __init__(self, message: str, offset: int = -1) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


def too_deep_at(text: str, limit: int = MAX_JSON_DEPTH) -> int:
    """Offset of the first bracket nested deeper than ``limit`` (outside strings), else -1."""
    if text.count("[") + text.count("{") <= limit:
        return -1  # cannot nest deeper than the brackets it has: the common case, in C
    depth = 0
    for match in _STRING_OR_BRACKET.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            if depth > limit:
                return match.start()
        elif token in ("]", "}"):
            depth -= 1
    return -1


def parse_json(text: str, *, limit: int = MAX_JSON_DEPTH) -> Any:
    """Decode ``text``; too deep or malformed JSON raises :class:`JsonInputError`."""
    offset = too_deep_at(text, limit)
    if offset >= 0:
        raise JsonInputError(f"is nested more than {limit} levels deep", offset)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise JsonInputError(f"is not valid JSON ({exc.msg})", exc.pos) from None
    except ValueError as exc:  # e.g. an integer longer than Python's 4,300-digit limit
        raise JsonInputError(f"is not usable JSON ({exc})") from None


def line_of(text: str, offset: int) -> int:
    """1-based line number of ``offset`` in ``text``."""
    return text.count("\n", 0, max(offset, 0)) + 1
