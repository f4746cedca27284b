"""A model version's adapter card (README.md in its artifact directory) for people to read.

The card is YAML front matter plus a prose body written by the worker. The dashboard shows the
front matter as a table and the body as escaped text: the card is data, so it is never turned
into HTML (no markdown renderer, no injection). ``yaml.safe_load`` only builds plain values.
The REST API's reading of the card (front matter as JSON) and the zip download live in
:mod:`app.domain.adapters`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from app.config import Settings
from app.db.models import ModelVersion
from app.domain.model_versions import resolve_artifact

CARD_FILE = "README.md"
MAX_CARD_BYTES = 512 * 1024
MAX_TABLE_ROWS = 200


@dataclass(frozen=True)
class AdapterCardView:
    rows: tuple[tuple[str, str], ...]
    """Flattened front matter: ("adapter_config.r", "8"), ..."""
    body: str
    problem: str | None = None


def read_card(version: ModelVersion, settings: Settings) -> AdapterCardView:
    path = resolve_artifact(version.artifact_path, settings) / CARD_FILE
    if not path.is_file() or path.is_symlink():
        return AdapterCardView((), "", "This version has no adapter card (README.md).")
    if path.stat().st_size > MAX_CARD_BYTES:
        return AdapterCardView((), "", "The adapter card is too large to show.")
    return parse_card_text(path.read_text(encoding="utf-8", errors="replace"))


def parse_card_text(text: str) -> AdapterCardView:
    """Split a card into (front matter rows, body); broken front matter is reported, not raised."""
    if not text.startswith("---\n"):
        return AdapterCardView((), text, "The card has no front matter.")
    end = text.find("\n---", 4)
    if end < 0:
        return AdapterCardView((), text, "The card's front matter is not closed by '---'.")
    body = text[end + 4 :].lstrip("\n")
    try:
        data = yaml.safe_load(text[4:end])
    except yaml.YAMLError as exc:
        return AdapterCardView((), body, f"The card's front matter is not valid YAML ({exc}).")
    if not isinstance(data, dict):
        return AdapterCardView((), body, "The card's front matter is not a mapping.")
    rows = tuple(flatten(data))[:MAX_TABLE_ROWS]
    return AdapterCardView(rows, body)


def flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested mappings become dotted keys; lists of scalars are joined with commas."""
    if isinstance(value, dict):
        if not value and prefix:
            return [(prefix, "—")]
        rows: list[tuple[str, str]] = []
        for key, item in value.items():
            rows.extend(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return rows
    if isinstance(value, list):
        if all(not isinstance(v, dict | list) for v in value):
            return [(prefix, ", ".join(_scalar(v) for v in value) or "—")]
        rows = []
        for i, item in enumerate(value):
            rows.extend(flatten(item, f"{prefix}[{i}]"))
        return rows
    return [(prefix, _scalar(value))]


def _scalar(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
