"""The adapter card's readable summary (the dashboard's and the models page's "Current model")."""

from __future__ import annotations

from app.domain.adapter_card import card_summary


def test_a_multi_label_cards_summary_rounds_its_dev_metrics_and_lists_thresholds() -> None:
    data = {
        "adapter_type": "lora", "adapter_config": {"kind": "lora", "r": 8, "alpha": 16},
        "task_type": "multi_label", "labels": ["baking", "bread"],
        "dev_metrics": {"n": 60, "micro_f1": 0.846847, "macro_f1": 0.828017,
                        "subset_accuracy": 0.733333, "hamming_loss": 0.0566667,
                        "cardinality_true": 0.916667, "per_label": [{"label": "baking"}]},
        "thresholds": {"baking": 0.45, "bread": 0.9},
    }
    summary = dict(card_summary(data))
    assert summary["Dev metrics"] == ("micro-F1 0.847, macro-F1 0.828, subset accuracy 0.733, "
                                      "Hamming loss 0.057, on 60 dev items")
    assert summary["Thresholds"] == "baking 0.45, bread 0.9"


def test_a_card_without_known_dev_metrics_shows_no_dev_line() -> None:
    assert "Dev metrics" not in dict(card_summary({"dev_metrics": {"cardinality_true": 1.0}}))
