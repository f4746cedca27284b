"""Turning submitted HTML form fields into domain values, with messages people can act on."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.datastructures import FormData

from app.domain.projects import ProjectSettings
from app.errors import InvalidInput


async def read_form(request: Request) -> FormData:
    """The parsed form (cached by Starlette), so sync routes can take free-form fields."""
    return await request.form()


FormDep = Annotated[FormData, Depends(read_form)]


def form_int(form: Mapping[str, Any], name: str, default: int) -> int:
    raw = str(form.get(name, "") or "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidInput(f"{name.replace('_', ' ').capitalize()} must be a whole number.",
                           details={"field": name}) from None


def form_float(form: Mapping[str, Any], name: str, default: float) -> float:
    raw = str(form.get(name, "") or "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise InvalidInput(f"{name.replace('_', ' ').capitalize()} must be a number.",
                           details={"field": name}) from None


def form_str(form: Mapping[str, Any], name: str) -> str:
    value = form.get(name, "")
    return value if isinstance(value, str) else ""


def project_settings_from_form(form: Mapping[str, Any]) -> ProjectSettings:
    return ProjectSettings(
        name=form_str(form, "name"),
        labels=tuple(form_str(form, "labels").splitlines()),
        description=form_str(form, "description").strip(),
        guidelines=form_str(form, "guidelines").strip(),
        label_budget=form_int(form, "label_budget", 1000),
        batch_size=form_int(form, "batch_size", 100),
        stop_threshold=form_float(form, "stop_threshold", 0.2),
        annotations_per_item=form_int(form, "annotations_per_item", 1),
    )


def blank_project_form() -> dict[str, Any]:
    return {
        "name": "", "description": "", "labels": "", "guidelines": "",
        "label_budget": 1000, "batch_size": 100, "stop_threshold": 0.2, "annotations_per_item": 1,
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
