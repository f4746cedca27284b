"""The inference worker's adapter router: every adapter kind, LRU eviction, exact swapping.

(It lives in ``worker/ml/adapter_router.py``; it is tested here, next to ``/predict``, because
its answers are what that endpoint returns.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from contract.adapter_config import AdapterConfig
from tests.worker.ml.tiny import LABEL_NAMES, make_corpus
from worker.ml.adapter_router import AdapterRouter, RouterLimits, is_shareable
from worker.ml.artifacts import load_artifact, write_artifact
from worker.ml.training import TrainConfig, train_classifier

TEXTS = ["goal team win", "bank loan price", "gene orbit lab", "the new report today"]


def _artifact(base: Path, root: Path, name: str, kind: str, labels: list[str], seed: int) -> Path:
    texts, ys = make_corpus(24, seed=seed)
    result = train_classifier(
        texts, [y % len(labels) for y in ys], label_names=labels, base_model=str(base),
        adapter=AdapterConfig(kind=kind, r=4, num_virtual_tokens=4),  # type: ignore[arg-type]
        config=TrainConfig(epochs=1, batch_size=8, device="cpu", seed=seed),
    )  # fmt: skip
    return write_artifact(result.classifier, root / name)


@pytest.mark.parametrize(("kind", "shared"),
                         [("lora", True), ("ia3", True), ("bottleneck", False), ("prompt", False)])
def test_every_kind_matches_the_ml_core(
    tiny_base: Path, tmp_path: Path, kind: str, shared: bool
) -> None:
    path = _artifact(tiny_base, tmp_path, kind, kind, LABEL_NAMES, seed=3)
    assert is_shareable(path) is shared
    router = AdapterRouter(device="cpu")
    prediction = router.predict(path, TEXTS)
    assert prediction.shared_base is shared
    assert prediction.label_names == LABEL_NAMES
    reference = load_artifact(path, device="cpu").predict_proba(TEXTS)
    np.testing.assert_allclose(prediction.probabilities, reference, atol=1e-5)


def test_lru_evicts_adapters_and_drops_an_empty_base(tiny_base: Path, tmp_path: Path) -> None:
    paths = [
        _artifact(tiny_base, tmp_path, f"p{i}", "lora", LABEL_NAMES[: 2 + i % 2], seed=i)
        for i in range(3)
    ]
    router = AdapterRouter(RouterLimits(max_adapters=2), device="cpu")
    first = router.predict(paths[0], TEXTS).probabilities
    router.predict(paths[1], TEXTS)
    router.predict(paths[2], TEXTS)  # evicts p0
    assert router.stats()["shared_adapters"] == 2 and router.stats()["bases"] == 1
    again = router.predict(paths[0], TEXTS).probabilities  # reloaded after eviction
    np.testing.assert_array_equal(first, again)
    assert router.stats()["misses"] == 4 and router.stats()["hits"] == 0
    assert router.predict(paths[0], TEXTS).shared_base
    assert router.stats()["hits"] == 1
    ia3 = _artifact(tiny_base, tmp_path, "ia3", "ia3", LABEL_NAMES, seed=9)
    single = AdapterRouter(RouterLimits(max_adapters=1), device="cpu")
    single.predict(paths[0], TEXTS)
    single.predict(ia3, TEXTS)  # evicts the only LoRA adapter: its base goes too
    assert single.stats()["bases"] == 1 and single.stats()["shared_adapters"] == 1


def test_interleaved_projects_do_not_leak_into_each_other(
    tiny_base: Path, tmp_path: Path
) -> None:
    a = _artifact(tiny_base, tmp_path, "a", "lora", LABEL_NAMES, seed=1)
    b = _artifact(tiny_base, tmp_path, "b", "lora", LABEL_NAMES, seed=2)
    router = AdapterRouter(device="cpu")
    answers = [router.predict(path, TEXTS).probabilities for path in (a, b, a, b)]
    assert not np.allclose(answers[0], answers[1])  # two different adapters
    np.testing.assert_array_equal(answers[0], answers[2])
    np.testing.assert_array_equal(answers[1], answers[3])


def test_an_artifact_on_another_base_is_refused(tiny_base: Path, tmp_path: Path) -> None:
    import json

    from contract.errors import MLError

    path = _artifact(tiny_base, tmp_path, "moved", "lora", LABEL_NAMES, seed=4)
    meta_file = path / "tapestry.json"
    meta = json.loads(meta_file.read_text())
    meta["base_model_sha256"] = "0" * 64
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(MLError, match="does not match"):
        AdapterRouter(device="cpu").predict(path, TEXTS)


def test_router_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="max_adapters"):
        RouterLimits(max_adapters=0)
