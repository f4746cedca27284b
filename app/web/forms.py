"""Turning submitted HTML form fields into domain values, with messages people can act on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.datastructures import FormData

from app.db.models import TASK_SINGLE_LABEL, Label, Project
from app.deps import MAX_DB_INT
from app.domain.policy import BudgetSettings
from app.domain.project_setup import LabelStyle, ModelSettings
from app.domain.projects import ProjectSettings
from app.errors import InvalidInput
from contract.budget import DEFAULT_BATCH_SIZE, DEFAULT_LABEL_BUDGET, DEFAULT_STOP_THRESHOLD


async def read_form(request: Request) -> FormData:
    """The parsed form (cached by Starlette), so sync routes can take free-form fields."""
    return await request.form()


FormDep = Annotated[FormData, Depends(read_form)]
MAX_FORM_IDS = 200


def form_int(form: Mapping[str, Any], name: str, default: int) -> int:
    raw = str(form.get(name, "") or "").strip()
    if not raw:
        return default
    try:
        number = int(raw) if len(raw) <= 20 else None
    except ValueError:
        number = None
    what = name.replace("_", " ").capitalize()
    digits = raw.lstrip("+-")
    if number is None and not digits.isdigit():  # the field's own range: the domain says it
        raise InvalidInput(f"{what} must be a whole number, got {raw[:40]!r}.",
                           details={"field": name})
    if number is None or not -MAX_DB_INT <= number <= MAX_DB_INT:  # too many digits, too big
        raise InvalidInput(f"{what} is too {'small' if raw.startswith('-') else 'large'} "
                           f"({len(digits)} digits).", details={"field": name})
    return number


def form_float(form: Mapping[str, Any], name: str, default: float) -> float:
    raw = str(form.get(name, "") or "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise InvalidInput(f"{name.replace('_', ' ').capitalize()} must be a number.",
                           details={"field": name}) from None


def form_ids(form: FormData, name: str) -> list[int]:
    """Every value of a repeated field (ticked checkboxes) as ids; none ticked: ``[]``."""
    values = form.getlist(name)
    if len(values) > MAX_FORM_IDS:
        raise InvalidInput(f"At most {MAX_FORM_IDS} values in {name!r}.", details={"field": name})
    ids = []
    for value in values:
        raw = value.strip() if isinstance(value, str) else ""
        if not (raw.isascii() and raw.isdigit()) or len(raw) > 10 \
                or not 1 <= int(raw) <= MAX_DB_INT:
            raise InvalidInput(f"{name.replace('_', ' ').capitalize()} must be ids.",
                               details={"field": name})
        ids.append(int(raw))
    return ids


def form_str(form: Mapping[str, Any], name: str) -> str:
    value = form.get(name, "")
    return value if isinstance(value, str) else ""


def project_settings_from_form(form: Mapping[str, Any]) -> ProjectSettings:
    return ProjectSettings(
        name=form_str(form, "name"),
        labels=tuple(form_str(form, "labels").splitlines()),
        description=form_str(form, "description").strip(),
        guidelines=form_str(form, "guidelines").strip(),
        budget=BudgetSettings(
            label_budget=form_int(form, "label_budget", DEFAULT_LABEL_BUDGET),
            batch_size=form_int(form, "batch_size", DEFAULT_BATCH_SIZE),
            stop_threshold=form_float(form, "stop_threshold", DEFAULT_STOP_THRESHOLD),
        ),
        annotations_per_item=form_int(form, "annotations_per_item", 1),
        task_type=form_str(form, "task_type") or TASK_SINGLE_LABEL,
    )


def blank_project_form() -> dict[str, Any]:
    return {
        "name": "", "description": "", "labels": "", "guidelines": "",
        "label_budget": 1000, "batch_size": 100, "stop_threshold": 0.2, "annotations_per_item": 1,
        "task_type": TASK_SINGLE_LABEL,
    }


def echo_form(form: Mapping[str, Any]) -> dict[str, Any]:
    """The submitted values, to re-render a form after an error without losing input."""
    echoed = blank_project_form()
    if "label_descriptions" in form:
        echoed["label_descriptions"] = ""
    for key in echoed:
        value = form.get(key)
        if isinstance(value, str):
            echoed[key] = value
    return echoed


def general_settings_from_form(form: Mapping[str, Any], project: Project) -> ProjectSettings:
    """The settings page's "General" section; budget numbers it does not show stay as they are."""
    return ProjectSettings(
        name=form_str(form, "name"),
        labels=tuple(form_str(form, "labels").splitlines()),
        description=form_str(form, "description").strip(),
        guidelines=form_str(form, "guidelines").strip(),
        budget=BudgetSettings.of(project),
        annotations_per_item=form_int(form, "annotations_per_item",
                                      project.annotations_per_item),
        task_type=form_str(form, "task_type") or project.task_type,
    )


def budget_settings_from_form(form: Mapping[str, Any], project: Project) -> BudgetSettings:
    return BudgetSettings(
        label_budget=form_int(form, "label_budget", project.label_budget),
        batch_size=form_int(form, "batch_size", project.batch_size),
        reserve_fraction=form_float(form, "reserve_percent", project.reserve_fraction * 100)
        / 100.0,
        stop_threshold=form_float(form, "stop_threshold", project.stop_threshold),
        auto_stop=form_str(form, "auto_stop") == "on",
    )


def model_settings_from_form(form: Mapping[str, Any], *, model_root: Path,
                             multi_label: bool = False) -> ModelSettings:
    size_raw = form_str(form, "adapter_size").strip()
    return ModelSettings(
        base_model=form_str(form, "base_model"),
        adapter_kind=form_str(form, "adapter_kind"),
        adapter_size=form_int(form, "adapter_size", 0) if size_raw else None,
        strategy=form_str(form, "strategy"),
        model_root=model_root,
        multi_label=multi_label,
    )


def label_styles_from_form(form: Mapping[str, Any], labels: Sequence[Label]) -> list[LabelStyle]:
    if not labels:
        raise InvalidInput("This project has no labels.")
    return [
        LabelStyle(label_id=label.id,
                   color=form_str(form, f"color_{label.id}") or label.color,
                   shortcut=form_str(form, f"shortcut_{label.id}"))
        for label in labels
    ]
