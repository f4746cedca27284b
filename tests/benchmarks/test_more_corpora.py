"""The benchmark's spam and tweet readers, on small inputs (no archive needed)."""

from __future__ import annotations

import pytest

from tests.benchmarks.more_corpora import bucket, load_split, message_text, parse_tweets

MULTIPART = """From someone@example.org  Thu Aug 22 13:17:22 2002
Return-Path: <someone@example.org>
Received: from mail.example.org by mx.example.org
Subject: Cheap   offer
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="XX"

--XX
Content-Type: text/plain; charset="default"

Buy now.
--XX
Content-Type: text/html; charset=us-ascii

<p>Buy&nbsp;<b>now</b> &amp; save</p>
--XX
Content-Type: application/octet-stream
Content-Transfer-Encoding: base64

AAAA
--XX--
"""


def test_message_text_keeps_subject_and_text_parts_and_drops_headers_and_tags() -> None:
    text = message_text(MULTIPART)
    assert text == "Cheap offer Buy now. Buy now & save"
    assert "example.org" not in text and "<" not in text and "AAAA" not in text


def test_message_text_of_a_plain_message() -> None:
    assert message_text("Subject: hi\n\nline one\n\nline two\n") == "hi line one line two"


def test_parse_tweets_reads_rows_and_skips_empty_texts() -> None:
    content = 'sentiment,confidence,text\nnegative,0.7,"no, thanks"\npositive,1,\nneutral,0.5,ok\n'
    assert parse_tweets(content) == (["no, thanks", "ok"], ["negative", "neutral"])


def test_parse_tweets_refuses_another_layout() -> None:
    with pytest.raises(ValueError, match="unexpected header"):
        parse_tweets("label,text\nspam,hi\n")


def test_bucket_is_stable_and_spread() -> None:
    assert bucket("hello", 3) == bucket("hello", 3)
    counts = [0, 0, 0]
    for i in range(3000):
        counts[bucket(f"text {i}", 3)] += 1
    assert min(counts) > 900


def test_load_split_refuses_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown corpus"):
        load_split("imdb", "train")
    with pytest.raises(ValueError, match="unknown split"):
        load_split("spam", "dev")
