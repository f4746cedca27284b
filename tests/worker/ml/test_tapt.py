"""TAPT lowers held-out perplexity, resumes after cancellation, and feeds adapter training."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from contract.adapter_config import AdapterConfig
from contract.errors import Cancelled, ConfigError
from tests.worker.ml.tiny import make_corpus
from worker.ml.masking import corrupt, select_positions
from worker.ml.mlm_loss import masked_lm_loss_sum
from worker.ml.models import load_masked_lm
from worker.ml.progress import RecordingReporter
from worker.ml.surprisal import mlm_surprisal_embeddings
from worker.ml.tapt import TaptConfig, run_tapt
from worker.ml.training import TrainConfig, train_classifier


def _config(**overrides):
    values = dict(
        max_steps=150,
        lr=5e-3,
        batch_size=16,
        eval_every=50,
        patience=3,
        max_length=32,
        mlm_probability=0.3,
    )
    values.update(overrides)
    return TaptConfig(**values)


pytestmark = pytest.mark.filterwarnings("ignore:TAPT lr")


@pytest.fixture(scope="module")
def tapt_texts():
    return make_corpus(160, seed=5)[0]


@pytest.fixture(scope="module")
def tapt_dir(tiny_bert, tapt_texts, tmp_path_factory):
    out = tmp_path_factory.mktemp("tapt") / "run"
    run_tapt(tapt_texts, base_model=str(tiny_bert), out_dir=out, config=_config())
    return out


def test_tapt_lowers_heldout_perplexity(tapt_dir):
    record = json.loads((tapt_dir / "tapt.json").read_text())
    assert record["new_head"] is True  # the tiny base, like MiniLM, has no MLM head
    assert record["ppl_after"] < 0.9 * record["ppl_before"]
    assert record["steps"] >= record["best_step"] > 0
    assert (tapt_dir / "model.safetensors").is_file() and not (tapt_dir / ".tapt-work").exists()


def test_tapt_output_is_a_base_for_adapters(tapt_dir, corpus, label_names):
    texts, labels = corpus
    result = train_classifier(
        texts[:24],
        labels[:24],
        label_names=label_names,
        base_model=str(tapt_dir),
        adapter=AdapterConfig(kind="lora"),
        config=TrainConfig(epochs=1, batch_size=8),
    )
    assert result.classifier.predict_proba(texts[:4]).shape == (4, 3)


def test_finished_run_is_returned_without_training(tiny_bert, tapt_texts, tapt_dir):
    again = run_tapt(tapt_texts, base_model=str(tiny_bert), out_dir=tapt_dir, config=_config())
    assert again.steps == json.loads((tapt_dir / "tapt.json").read_text())["steps"]


def test_refresh_pass_continues_the_trained_head(tapt_dir, tmp_path):
    other = make_corpus(80, seed=11)[0]
    result = run_tapt(
        other,
        base_model=str(tapt_dir),
        out_dir=tmp_path / "refresh",
        config=_config(max_steps=20, eval_every=10),
    )
    assert result.new_head is False
    first = json.loads((tapt_dir / "tapt.json").read_text())
    assert result.ppl_before < first["ppl_before"]  # starts from the TAPT'd head, not random


def test_cancelled_run_resumes_to_the_same_result(tiny_bert, tapt_texts, tmp_path):
    config = _config(max_steps=30, eval_every=10)
    straight = run_tapt(
        tapt_texts, base_model=str(tiny_bert), out_dir=tmp_path / "a", config=config
    )
    with pytest.raises(Cancelled):
        run_tapt(
            tapt_texts,
            base_model=str(tiny_bert),
            out_dir=tmp_path / "b",
            config=config,
            reporter=RecordingReporter(cancel_after=12),
        )
    assert (tmp_path / "b" / ".tapt-work" / "checkpoint" / "progress.json").is_file()
    reporter = RecordingReporter()
    resumed = run_tapt(
        tapt_texts,
        base_model=str(tiny_bert),
        out_dir=tmp_path / "b",
        config=config,
        reporter=reporter,
    )
    assert reporter.events[0]["step"] == 13
    assert resumed.steps == straight.steps
    assert resumed.ppl_after == pytest.approx(straight.ppl_after, rel=1e-4)
    assert {"loss", "eta_seconds"} <= set(reporter.events[0]["metrics"])


def test_masked_only_logits_give_the_full_loss(tiny_bert):
    model, _ = load_masked_lm(tiny_bert)
    model.eval()
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, model.config.vocab_size, (3, 12), generator=generator)
    mask = torch.ones_like(ids)
    chosen = select_positions(mask.bool(), 0.15, generator)
    inputs, labels = corrupt(ids, chosen, 4, model.config.vocab_size, generator)
    with torch.no_grad():
        fast, n_fast = masked_lm_loss_sum(model, inputs, mask, labels, masked_only=True)
        full, n_full = masked_lm_loss_sum(model, inputs, mask, labels, masked_only=False)
    assert n_fast == n_full > 0
    assert torch.allclose(fast, full, rtol=1e-5)


def test_masking_rates_and_80_10_10():
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(10, 1000, (200, 100), generator=generator)
    maskable = torch.ones_like(ids, dtype=torch.bool)
    maskable[:, 0] = False
    chosen = select_positions(maskable, 0.15, generator)
    assert not chosen[:, 0].any()
    assert abs(chosen.float().mean().item() / 0.99 - 0.15) < 0.01
    inputs, labels = corrupt(ids, chosen, 3, 1000, generator)
    assert torch.equal(labels != -100, chosen)
    replaced = (inputs == 3)[chosen].float().mean().item()
    unchanged = (inputs == ids)[chosen].float().mean().item()
    assert abs(replaced - 0.8) < 0.02 and 0.09 < unchanged < 0.12  # 10 % kept (+ random hits)


def test_whole_word_masking_takes_all_pieces():
    generator = torch.Generator().manual_seed(2)
    word_ids = torch.tensor([[-1, 0, 0, 1, 2, 2, 2, 3, -1]] * 50)
    maskable = word_ids >= 0
    chosen = select_positions(maskable, 0.3, generator, word_ids)
    for row in range(50):
        for word in range(4):
            picked = chosen[row][word_ids[row] == word]
            assert picked.all() or not picked.any()


def test_surprisal_embeddings_are_deterministic_and_normalised(tapt_dir, tapt_texts):
    first = mlm_surprisal_embeddings(tapt_dir, tapt_texts[:6], max_length=24, seed=3)
    shuffled = mlm_surprisal_embeddings(tapt_dir, tapt_texts[5::-1], max_length=24, seed=3)
    assert first.shape == (6, 24) and first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(first, shuffled[::-1], atol=1e-5)
    masked = mlm_surprisal_embeddings(tapt_dir, tapt_texts[:6], max_length=24, mode="masked")
    assert (masked > 0).sum() > (first > 0).sum()


def test_tapt_config_validation():
    with pytest.raises(ConfigError, match="grad_accum"):
        TaptConfig(batch_size=10, grad_accum=3)
    with pytest.raises(ConfigError, match="mlm_probability"):
        TaptConfig(mlm_probability=1.5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        TaptConfig(lr=5e-4)
    assert any("recommended" in str(w.message) for w in caught)
    assert TaptConfig.from_dict(TaptConfig(max_steps=7).to_dict()).max_steps == 7


def test_packed_blocks_never_exceed_the_models_positions(tiny_bert, tapt_texts, tmp_path):
    """The tiny BERT has 64 positions; packed blocks of max_length 128 would not fit."""
    result = run_tapt(tapt_texts, base_model=str(tiny_bert), out_dir=tmp_path / "run",
                      config=_config(max_steps=4, eval_every=2, max_length=128))
    assert result.steps == 4


def test_fit_steps_counts_the_evaluations_and_never_plans_past_the_budget():
    from worker.ml.tapt import fit_steps

    # 100 s left at 1 s a step + 0.25 s of evaluation per step: 80 more steps
    assert fit_steps(100.0, 1.0, 0.25, done=4, most=1000) == 84
    assert fit_steps(100.0, 1.0, 0.25, done=4, most=50) == 50  # the step budget caps it
    assert fit_steps(-3.0, 1.0, 0.0, done=4, most=1000) == 4  # already late: stop now
    with pytest.raises(ConfigError, match="max_minutes"):
        TaptConfig(max_minutes=-1)


def _slow_steps(monkeypatch, seconds):
    """Every TAPT step takes at least ``seconds`` (a slow machine, deterministically)."""
    import time

    from worker.ml import tapt

    real = tapt._Tapt.train_step

    def slow(self, corpus, step):
        time.sleep(seconds)
        return real(self, corpus, step)

    monkeypatch.setattr(tapt._Tapt, "train_step", slow)


def test_a_time_budget_fits_the_steps_to_the_measured_pace(
    tiny_bert, tapt_texts, tmp_path, monkeypatch
):
    _slow_steps(monkeypatch, 0.05)
    budget = 0.015  # minutes: 0.9 s at >= 0.05 s a step is at most 18 steps
    result = run_tapt(tapt_texts, base_model=str(tiny_bert), out_dir=tmp_path / "run",
                      config=_config(max_steps=5000, max_minutes=budget))
    record = json.loads((tmp_path / "run" / "tapt.json").read_text())
    assert result.stop_reason in ("", "time")
    assert 1 <= result.steps <= 18
    if record["planned_steps"] is not None:  # calibrated (not out of time before step 4)
        assert 4 <= record["planned_steps"] <= 18 and result.steps <= record["planned_steps"]
    assert record["history"][-1]["step"] == result.steps  # the last step was evaluated


def test_the_time_budget_stops_the_run_even_when_the_pace_was_misjudged(
    tiny_bert, tapt_texts, tmp_path, monkeypatch
):
    from worker.ml import tapt

    _slow_steps(monkeypatch, 0.05)
    monkeypatch.setattr(tapt, "fit_steps", lambda *_, most, **__: most)  # "plenty of time"
    result = run_tapt(tapt_texts, base_model=str(tiny_bert), out_dir=tmp_path / "run",
                      config=_config(max_steps=5000, max_minutes=0.015))
    assert result.stop_reason == "time" and result.stopped_early
    assert result.steps <= 18
    assert result.ppl_after <= result.ppl_before  # the best weights so far are kept


def test_an_epoch_budget_is_scaled_to_the_tokenised_blocks(tiny_bert, tapt_texts, tmp_path):
    from worker.ml import tapt
    from worker.ml.models import load_tokenizer

    config = _config(max_steps=400, epochs=1.5, min_steps=2, batch_size=8, eval_every=1000)
    blocks = tapt.units_per_epoch(tapt.training_corpus(
        load_tokenizer(str(tiny_bert)), tapt.split_heldout(tapt_texts, config, None)[0], config))
    result = run_tapt(tapt_texts, base_model=str(tiny_bert), out_dir=tmp_path / "run",
                      config=config)
    assert result.steps == -(-3 * blocks // (2 * 8)) < 400  # ceil(1.5 x blocks / 8)
    record = json.loads((tmp_path / "run" / "tapt.json").read_text())
    assert record["config"]["max_steps"] == result.steps and record["config"]["epochs"] == 0
    floor = run_tapt(tapt_texts, base_model=str(tiny_bert), out_dir=tmp_path / "floor",
                     config=_config(max_steps=400, epochs=0.01, min_steps=5, batch_size=8,
                                    eval_every=1000))
    assert floor.steps == 5


def test_epoch_settings_are_validated():
    with pytest.raises(ConfigError, match="epochs"):
        TaptConfig(epochs=-0.5)
    with pytest.raises(ConfigError, match="epochs"):
        TaptConfig(epochs=1e6)
    with pytest.raises(ConfigError, match="min_steps"):
        TaptConfig(min_steps=-1)
