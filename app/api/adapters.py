"""Adapter distribution: download the current or a pinned adapter as a zip, or read its card.

The zip is the ML core's artifact directory (files at the archive root): for LoRA/IA3/prompt,
``adapter/`` is peft's own ``save_pretrained`` output (head included), loadable with
``PeftModel.from_pretrained``; bottleneck adapters use Tapestry's format
(``adapter/bottleneck.safetensors`` + ``head.safetensors``). ``labels.json``, ``tokenizer/``,
``tapestry.json`` and the card ``README.md`` travel along. See docs/api.md for the client side.

Caching: the ETag is the artifact's sha256, so ``If-None-Match`` answers 304 without a body.
The current adapter may change (``no-cache``: revalidate every time); a pinned version never does.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Header, Path
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel

from app.api.router import api_router
from app.deps import ProjectReader, SessionDep, SettingsDep
from app.domain.adapters import (
    AdapterArtifact,
    adapter_zip,
    current_artifact,
    etag_matches,
    pinned_artifact,
    read_card,
)

router = api_router(tags=["adapters"])

ZIP_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The adapter artifact as a zip archive.",
        "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
        "headers": {"ETag": {"schema": {"type": "string"}, "description": "artifact sha256"}},
    },
    304: {"description": "The client's copy (If-None-Match) is current."},
}
IfNoneMatch = Annotated[
    str | None,
    Header(alias="If-None-Match", max_length=2000, description="ETags the client already holds."),
]
VersionNumber = Annotated[int, Path(ge=1, le=2_147_483_647, description="Version number (v1, v2…)")]
MUTABLE = "private, no-cache"
IMMUTABLE = "private, max-age=31536000, immutable"


class AdapterCardOut(BaseModel):
    """The card's front matter plus where it comes from."""

    project_id: int
    version: int
    model_version_id: int
    sha256: str
    adapter_kind: str
    card: dict[str, Any]


def _download(
    artifact: AdapterArtifact, if_none_match: str | None, settings: SettingsDep, cache: str
) -> Response:
    headers = {"ETag": artifact.etag, "Cache-Control": cache}
    if etag_matches(if_none_match, artifact.etag):
        return Response(status_code=304, headers=headers)
    return FileResponse(
        adapter_zip(artifact, settings),
        media_type="application/zip",
        filename=artifact.download_name,
        headers=headers,
    )


def _card(artifact: AdapterArtifact) -> AdapterCardOut:
    return AdapterCardOut(
        project_id=artifact.project_id,
        version=artifact.version,
        model_version_id=artifact.model_version_id,
        sha256=artifact.sha256,
        adapter_kind=artifact.adapter_kind,
        card=read_card(artifact),
    )


@router.get(
    "/projects/{project_id}/adapter",
    response_class=Response,
    responses=ZIP_RESPONSES,
    summary="Download the current adapter (zip)",
)
def download_current_adapter(
    db: SessionDep, access: ProjectReader, settings: SettingsDep, if_none_match: IfNoneMatch = None
) -> Response:
    artifact = current_artifact(db, access.project, settings)
    return _download(artifact, if_none_match, settings, MUTABLE)


@router.get("/projects/{project_id}/adapter/card", response_model=AdapterCardOut)
def current_adapter_card(
    db: SessionDep, access: ProjectReader, settings: SettingsDep
) -> AdapterCardOut:
    return _card(current_artifact(db, access.project, settings))


@router.get(
    "/projects/{project_id}/model-versions/{version}/adapter",
    response_class=Response,
    responses=ZIP_RESPONSES,
    summary="Download a pinned model version's adapter (zip)",
)
def download_pinned_adapter(
    version: VersionNumber,
    db: SessionDep,
    access: ProjectReader,
    settings: SettingsDep,
    if_none_match: IfNoneMatch = None,
) -> Response:
    artifact = pinned_artifact(db, access.project.id, version, settings)
    return _download(artifact, if_none_match, settings, IMMUTABLE)


@router.get("/projects/{project_id}/model-versions/{version}/adapter/card",
            response_model=AdapterCardOut)
def pinned_adapter_card(
    version: VersionNumber, db: SessionDep, access: ProjectReader, settings: SettingsDep
) -> AdapterCardOut:
    return _card(pinned_artifact(db, access.project.id, version, settings))
