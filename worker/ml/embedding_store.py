"""Sentence embeddings of a project's items, stored once per encoder version.

The live head, the zero-shot cold start, acquisition and nearest neighbours all read the same
vectors: the encoder's last hidden states mean-pooled over the attention mask and L2-normalised
(:func:`worker.ml.pooling.mean_pool`). They are computed once per encoder (keyed by its weight
fingerprint and the truncation length) and stored as float16 ``.npy`` files with an ``int64`` item
id index, read back memory-mapped.

Writing is chunked and resumable: each chunk is a pair of files written to a temporary name and
renamed into place, so a killed worker leaves only whole chunks; the next call embeds the ids no
chunk holds yet (new imports are embedded incrementally the same way). :meth:`EmbeddingStore.load`
merges the chunks into one consolidated pair when there are several.

Pure numpy + files: no database, no Celery.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contract.errors import ConfigError

DTYPE = np.float16
CONSOLIDATED = "embeddings"
CHUNK_PREFIX = "chunk-"


def encoder_key(fingerprint: str, max_length: int, windows: int = 1) -> str:
    """Directory name of one encoder version's embeddings (fingerprint + truncation length, and
    the number of windows a text is read in when more than one)."""
    if not fingerprint:
        raise ConfigError("an encoder fingerprint is needed to key stored embeddings")
    if windows == 1:
        digest = hashlib.sha256(f"{fingerprint}:{max_length}".encode()).hexdigest()[:20]
        return f"enc-{digest}-L{max_length}"
    digest = hashlib.sha256(f"{fingerprint}:{max_length}:{windows}".encode()).hexdigest()[:20]
    return f"enc-{digest}-L{max_length}-W{windows}"


@dataclass(frozen=True)
class StoredEmbeddings:
    """Item ids (sorted) and their vectors, row for row."""

    ids: np.ndarray  # (n,) int64, ascending
    vectors: np.ndarray  # (n, d) float16, possibly a read-only memory map

    def rows_of(self, item_ids: Sequence[int]) -> np.ndarray:
        """Row positions of ``item_ids``; raises if any is not stored."""
        wanted = np.asarray(item_ids, dtype=np.int64)
        if len(wanted) == 0:
            return np.zeros(0, dtype=np.int64)
        pos = np.searchsorted(self.ids, wanted)
        pos = np.clip(pos, 0, max(len(self.ids) - 1, 0))
        if len(self.ids) == 0 or not np.array_equal(self.ids[pos], wanted):
            missing = wanted[(len(self.ids) == 0) | (self.ids[pos] != wanted)]
            raise KeyError(f"{len(missing)} item(s) have no stored embedding, e.g. {missing[:5]}")
        return pos

    def take(self, item_ids: Sequence[int]) -> np.ndarray:
        """Float32 vectors of ``item_ids`` in the given order."""
        return np.asarray(self.vectors[self.rows_of(item_ids)], dtype=np.float32)


class EmbeddingStore:
    """One directory of float16 vectors keyed by item id, for one encoder version."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    # -- reading ----------------------------------------------------------------------------
    def _chunks(self) -> list[Path]:
        return sorted(self.directory.glob(f"{CHUNK_PREFIX}*.ids.npy"))

    def stored_ids(self) -> np.ndarray:
        parts = [np.load(p) for p in self._id_files()]
        if not parts:
            return np.zeros(0, dtype=np.int64)
        return np.unique(np.concatenate(parts).astype(np.int64))

    def _id_files(self) -> list[Path]:
        files = self._chunks()
        main = self.directory / f"{CONSOLIDATED}.ids.npy"
        return [main, *files] if main.exists() else files

    def missing(self, item_ids: Sequence[int]) -> list[int]:
        """The ids of ``item_ids`` without a stored vector, in the given order."""
        have = set(self.stored_ids().tolist())
        return [int(i) for i in item_ids if int(i) not in have]

    def load(self) -> StoredEmbeddings:
        """All stored vectors, memory-mapped (chunks are merged into one pair first)."""
        if self._chunks():
            self._consolidate()
        ids_file = self.directory / f"{CONSOLIDATED}.ids.npy"
        if not ids_file.exists():
            return StoredEmbeddings(np.zeros(0, np.int64), np.zeros((0, 0), DTYPE))
        ids = np.load(ids_file)
        vectors = np.load(self.directory / f"{CONSOLIDATED}.npy", mmap_mode="r")
        return StoredEmbeddings(ids, vectors)

    # -- writing ----------------------------------------------------------------------------
    def add(self, item_ids: Sequence[int], vectors: np.ndarray) -> None:
        """Store one chunk atomically (ids and vectors appear together or not at all)."""
        ids = np.asarray(item_ids, dtype=np.int64)
        if vectors.ndim != 2 or len(vectors) != len(ids):
            raise ConfigError(f"{len(ids)} ids but vectors of shape {vectors.shape}")
        if len(ids) == 0:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        number = len(self._chunks())
        stem = f"{CHUNK_PREFIX}{number:06d}-{os.getpid()}-{int(ids[0])}"
        # vectors first: a chunk counts once its ids file exists
        _atomic_save(self.directory / f"{stem}.npy", vectors.astype(DTYPE))
        _atomic_save(self.directory / f"{stem}.ids.npy", ids)

    def _consolidate(self) -> None:
        id_parts: list[np.ndarray] = []
        vec_parts: list[np.ndarray] = []
        main_ids = self.directory / f"{CONSOLIDATED}.ids.npy"
        if main_ids.exists():
            id_parts.append(np.load(main_ids))
            vec_parts.append(np.load(self.directory / f"{CONSOLIDATED}.npy"))
        chunks = self._chunks()
        for ids_file in chunks:
            id_parts.append(np.load(ids_file))
            vec_parts.append(np.load(_vectors_of(ids_file)))
        ids = np.concatenate(id_parts).astype(np.int64)
        vectors = np.concatenate(vec_parts).astype(DTYPE)
        order = np.argsort(ids, kind="stable")
        ids, vectors = ids[order], vectors[order]
        keep = np.ones(len(ids), dtype=bool)
        keep[1:] = ids[1:] != ids[:-1]  # an id embedded twice (a retried chunk): keep one
        # vectors first, ids last: readers go by the ids file
        _atomic_save(self.directory / f"{CONSOLIDATED}.npy", vectors[keep])
        _atomic_save(main_ids, ids[keep])
        for ids_file in chunks:
            _vectors_of(ids_file).unlink(missing_ok=True)
            ids_file.unlink(missing_ok=True)


def _vectors_of(ids_file: Path) -> Path:
    return ids_file.with_name(ids_file.name[: -len(".ids.npy")] + ".npy")


def _atomic_save(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as handle:
        np.save(handle, array, allow_pickle=False)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


Embed = Callable[[Sequence[str]], np.ndarray]
Progress = Callable[[int, int], None]


def embed_missing(
    store: EmbeddingStore,
    item_ids: Sequence[int],
    texts: Sequence[str],
    embed: Embed,
    *,
    chunk_size: int = 512,
    progress: Progress | None = None,
) -> int:
    """Embed the items the store lacks, chunk by chunk; returns how many were embedded.

    Interrupted runs resume where they stopped: whole chunks already written are skipped.
    """
    if len(item_ids) != len(texts):
        raise ConfigError(f"{len(item_ids)} ids but {len(texts)} texts")
    if chunk_size < 1:
        raise ConfigError(f"chunk_size must be >= 1, got {chunk_size}")
    todo = set(store.missing(item_ids))
    rows = [i for i, item_id in enumerate(item_ids) if int(item_id) in todo]
    for start in range(0, len(rows), chunk_size):
        part = rows[start : start + chunk_size]
        vectors = embed([texts[i] for i in part])
        store.add([int(item_ids[i]) for i in part], np.asarray(vectors, dtype=np.float32))
        if progress is not None:
            progress(min(start + chunk_size, len(rows)), len(rows))
    return len(rows)
