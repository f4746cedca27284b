"""Spreadsheet-safe CSV cells (CSV/formula injection, OWASP guidance).

A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is run as a formula
by Excel, LibreOffice and Google Sheets when a lead opens the export (``=HYPERLINK(...)``,
``=cmd|' /C calc'!A0``). Such text cells get a leading ``'``, which spreadsheets read as "this is
text" and do not display. Numbers stay numbers. Every CSV Tapestry writes goes through
:func:`safe_row`; JSONL exports are data for programs and stay exactly as stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """``value`` unchanged, or a text that would start a formula prefixed with ``'``."""
    if isinstance(value, str) and value.startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value


def safe_row(row: Mapping[str, Any]) -> dict[str, Any]:
    return {key: safe_cell(value) for key, value in row.items()}
