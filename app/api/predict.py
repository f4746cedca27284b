"""``POST /api/v1/projects/{id}/predict``: labels and probabilities from the project's adapter.

For a multi-label model (the live head, or an adapter version trained with sigmoid outputs) the
worker's answer also carries ``label_sets`` and ``thresholds``; they pass through as they are.

The route resolves which artifact to use (the current version, or ``model_version`` when the
client pins one) and hands the texts to an inference worker; see :mod:`app.api.inference_client`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends
from pydantic import BaseModel, Field, StringConstraints

from app.api.common import UNAVAILABLE, StrictInput, write_api_router
from app.api.inference_client import (
    InferenceClient,
    InferenceFailed,
    get_inference_client,
    raise_for_worker_error,
)
from app.db.models import SERVED_AVERAGE
from app.deps import ProjectReader, SessionDep, SettingsDep
from app.domain.adapters import current_artifact, pinned_artifact
from app.domain.live_head import served_live_head
from app.errors import InvalidInput

router = write_api_router(tags=["inference"])

MAX_TEXTS = 256
MAX_TEXT_CHARS = 20_000
Text = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT_CHARS)]


class PredictIn(StrictInput):
    texts: list[Text] = Field(min_length=1, max_length=MAX_TEXTS)
    model_version: int | None = Field(
        default=None, ge=1, le=2_147_483_647, description="Pin a version number; default: current."
    )


class PredictOut(BaseModel):
    model: str = Field(
        default="adapter",
        description="The served model that answered: 'adapter', 'live_head' (logistic "
        "regression on the encoder's sentence embeddings) or 'average' (their mean probability); "
        "the project serves whichever scores best on its dev set. A pinned model_version always "
        "uses that adapter.",
    )
    model_version: int | None
    model_version_id: int | None
    label_names: list[str]
    labels: list[str] = Field(description="The most probable label of each text, in order.")
    probabilities: list[list[float]] = Field(
        description="Per text, the probability of each label in label_names order (in a "
        "multi-label project each label's own probability: they need not sum to 1)."
    )
    label_sets: list[list[str]] | None = Field(
        default=None,
        description="Multi-label projects (the live head or a multi-label adapter version): per "
        "text, the labels whose probability reaches their threshold (possibly none). Absent "
        "(null) for a single-label model.",
    )
    thresholds: list[float] | None = Field(
        default=None,
        description="Multi-label projects: each label's decision threshold, in label_names "
        "order, tuned on the dev set (or out-of-fold) and stored with the head or the adapter "
        "artifact (tapestry.json 'thresholds'; by label name in the adapter card).",
    )


InferenceDep = Annotated[InferenceClient, Depends(get_inference_client)]


@router.post(
    "/projects/{project_id}/predict",
    response_model=PredictOut,
    responses={**UNAVAILABLE, 502: {"description": "The inference worker failed."}},
)
def predict(
    body: PredictIn,
    db: SessionDep,
    access: ProjectReader,
    settings: SettingsDep,
    client: InferenceDep,
) -> PredictOut:
    _check_lengths(body.texts, settings.max_text_chars)
    live = served_live_head(db, access.project.id) if body.model_version is None else None
    artifact = None
    if body.model_version is not None:
        artifact = pinned_artifact(db, access.project.id, body.model_version, settings)
    elif live is None or live[0] == SERVED_AVERAGE:
        artifact = current_artifact(db, access.project, settings)
    request: dict[str, Any] = {"texts": list(body.texts)}
    if artifact is not None:
        request |= {
            "artifact_path": artifact.stored_path,
            "sha256": artifact.sha256,
            "model_version_id": artifact.model_version_id,
            "version": artifact.version,
        }
    if live is not None:
        request["live_head"] = {"served": live[0], "path": live[1]}
    answer = client.predict(request, timeout=settings.inference_timeout_seconds)
    raise_for_worker_error(answer)
    try:
        out = PredictOut(
            model=live[0] if live is not None else "adapter",
            model_version=artifact.version if artifact is not None else None,
            model_version_id=artifact.model_version_id if artifact is not None else None,
            label_names=answer["label_names"],
            labels=answer["labels"],
            probabilities=answer["probabilities"],
            label_sets=answer.get("label_sets"),
            thresholds=answer.get("thresholds"),
        )
    except (KeyError, ValueError) as exc:
        raise InferenceFailed("The inference worker sent a malformed answer.") from exc
    if len(out.labels) != len(body.texts):
        raise InferenceFailed("The inference worker answered for a different number of texts.")
    return out


def _check_lengths(texts: list[str], limit: int) -> None:
    problems = [
        {"loc": ["body", "texts", str(i)], "message": f"longer than {limit} characters"}
        for i, text in enumerate(texts)
        if len(text) > limit
    ]
    if problems:
        raise InvalidInput(
            f"{len(problems)} text(s) exceed this server's limit of {limit} characters.",
            details={"errors": problems},
        )
