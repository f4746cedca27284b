"""Bounded JSON parsing for uploads (``app.domain.json_input``)."""

from __future__ import annotations

import pytest

from app.domain.json_input import (
    MAX_JSON_DEPTH,
    JsonInputError,
    line_of,
    parse_json,
    too_deep_at,
)


def test_nesting_up_to_the_limit_parses_and_one_more_level_is_refused() -> None:
    at_limit = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert parse_json(at_limit) is not None
    with pytest.raises(JsonInputError, match="nested more than"):
        parse_json("[" + at_limit + "]")


def test_brackets_inside_strings_do_not_count() -> None:
    text = '{"text": "' + "[{" * 5000 + '\\" still a string ]]", "n": [1, [2]]}'
    assert parse_json(text)["n"] == [1, [2]]
    assert too_deep_at(text) == -1


def test_the_offset_points_at_the_first_bracket_too_deep() -> None:
    text = '{"a": 1,\n "b":\n ' + "[" * 100_000 + "]" * 100_000 + "}"
    offset = too_deep_at(text)
    assert offset == text.index("[") + MAX_JSON_DEPTH - 1
    assert line_of(text, offset) == 3


def test_malformed_json_and_giant_integers_are_input_errors() -> None:
    with pytest.raises(JsonInputError, match="not valid JSON"):
        parse_json('{"text": ')
    with pytest.raises(JsonInputError, match="not usable JSON"):
        parse_json("9" * 5000)
