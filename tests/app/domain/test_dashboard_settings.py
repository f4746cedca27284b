"""The lead's settings: budget dials, model and strategy, label colours and shortcuts."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from app.domain import project_setup as setup
from app.domain.projects import get_labels
from app.errors import InvalidInput
from tests.factories import make_project


def test_strategy_list_matches_the_worker_registry() -> None:
    from contract.strategies import COLD_START_STRATEGY, DESCRIPTIONS, STRATEGIES
    from worker.ml.acquisition import get_strategy

    assert set(setup.STRATEGIES) == set(STRATEGIES) - {COLD_START_STRATEGY}
    assert dict(setup.STRATEGY_CHOICES).keys() <= DESCRIPTIONS.keys()
    assert [get_strategy(name).name for name in STRATEGIES] == list(STRATEGIES)


def test_a_new_project_uses_the_registry_default_strategy(db: Session) -> None:
    from contract.strategies import DEFAULT_STRATEGY

    project = make_project(db)
    db.flush()
    assert project.strategy == DEFAULT_STRATEGY
    assert project.strategy in setup.STRATEGIES  # so the settings form shows it selected


def test_web_settings_module_does_not_import_numpy_or_torch() -> None:
    import subprocess
    import sys

    code = ("import sys, app.domain.project_setup, app.domain.dashboard, app.domain.annotation;"
            "print(sorted(m for m in ('numpy', 'torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"label_budget": 0}, "label_budget"),
        ({"batch_size": 0}, "batch_size"),
        ({"reserve_fraction": 0.9}, "reserve_fraction"),
        ({"stop_threshold": -1.0}, "stop_threshold"),
    ],
)
def test_budget_settings_refuse_impossible_values(values: dict[str, float], field: str) -> None:
    good = {"label_budget": 500, "batch_size": 50, "reserve_fraction": 0.15,
            "stop_threshold": 0.2}
    with pytest.raises(InvalidInput) as caught:
        setup.BudgetSettings(**(good | values))  # type: ignore[arg-type]
    assert caught.value.details["field"] == field


def test_update_budget_applies_every_dial(db: Session) -> None:
    project = make_project(db)
    setup.update_budget(db, project, setup.BudgetSettings(750, 40, 0.2, 0.5, auto_stop=True))
    assert (project.label_budget, project.batch_size, project.reserve_fraction,
            project.stop_threshold, project.auto_stop) == (750, 40, 0.2, 0.5, True)


def test_model_settings_set_kind_and_size_through_the_worker_config(
    db: Session, tmp_path: Path
) -> None:
    project = make_project(db)
    setup.update_model(db, project, setup.ModelSettings("minilm", "bottleneck", 32, "entropy"))
    assert project.adapter_config["kind"] == "bottleneck"
    assert project.adapter_config["bottleneck_size"] == 32
    assert project.strategy == "entropy"
    assert setup.adapter_size(project.adapter_config) == 32
    folder = tmp_path / "models" / "x"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    setup.update_model(db, project, setup.ModelSettings(str(folder), "ia3", None, "margin",
                                                        model_root=tmp_path / "models"))
    assert project.adapter_config["kind"] == "ia3" and project.base_model == str(folder.resolve())
    assert setup.adapter_size(project.adapter_config) is None


def test_model_settings_refuse_what_the_worker_would_refuse() -> None:
    with pytest.raises(InvalidInput, match="strategy"):
        setup.ModelSettings("minilm", "lora", 8, "magic")
    with pytest.raises(InvalidInput, match="Adapter settings refused"):
        setup.ModelSettings("minilm", "lora", 0, "entropy").adapter_config({})
    with pytest.raises(InvalidInput, match="adapter type"):
        setup.ModelSettings("minilm", "prefix", 8, "entropy")


def test_label_styles_validate_colour_and_keys(db: Session) -> None:
    project = make_project(db, labels=("a", "b"))
    a, b = get_labels(db, project.id)
    with pytest.raises(InvalidInput, match="#rrggbb"):
        setup.LabelStyle(a.id, "red; background:url(x)", "1")
    with pytest.raises(InvalidInput, match="reserved"):
        setup.LabelStyle(a.id, "#112233", "z")
    with pytest.raises(InvalidInput, match="more than one label"):
        setup.update_label_styles(db, project, [setup.LabelStyle(a.id, "#112233", "q"),
                                                setup.LabelStyle(b.id, "#445566", "Q")])
    setup.update_label_styles(db, project, [setup.LabelStyle(a.id, "#112233", "q"),
                                            setup.LabelStyle(b.id, "#445566", "")])
    assert (a.color, a.shortcut, b.shortcut) == ("#112233", "q", "")
