"""``GET /api/v1/projects/{id}/live-head``: the live head as a tiny artifact (zip).

Weights as ``.npy`` (``embed_W``: (classes, dim), ``embed_b``: (classes,)) and ``live_head.json``
naming the encoder it belongs to (path, weight fingerprint, tokens per text, pooling: mean over
the attention mask, L2-normalised) and the label names. It loads with NumPy alone:
``softmax(e @ W.T + b)`` on an embedding ``e`` of that encoder. The web process only zips files.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from fastapi.responses import Response

from app.api.router import api_router
from app.deps import ProjectReader, SessionDep
from app.domain.live_head import live_head_state
from app.errors import Conflict

router = api_router(tags=["adapters"])


class NoLiveHeadYet(Conflict):
    code = "no_live_head"


@router.get(
    "/projects/{project_id}/live-head",
    response_class=Response,
    responses={200: {"content": {"application/zip": {}}}, 409: {"description": "Not fitted yet."}},
    summary="Download the live head (zip: weights as .npy + the encoder it belongs to)",
)
def download_live_head(db: SessionDep, access: ProjectReader) -> Response:
    state = live_head_state(db, access.project.id)
    directory = Path(state.artifact_path) if state and state.artifact_path else None
    if directory is None or not any(
        (directory / name).is_file() for name in ("live_head.json", "multilabel_head.json")
    ):
        raise NoLiveHeadYet(
            "This project has no live head yet: it is fitted once two classes have labels "
            "(in a multi-label project, once 10 items have label sets).",
            details={"project_id": access.project.id},
        )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(directory.iterdir()):
            if path.is_file():
                archive.write(path, f"live-head/{path.name}")
    name = f"project-{access.project.id}-live-head-{state.labels_used if state else 0}-labels.zip"
    return Response(
        buffer.getvalue(), media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{name}"',
                 "Cache-Control": "no-store"},
    )
