"""``inference.predict``: class probabilities for texts under one model version's adapter.

Runs on the ``inference`` queue in a worker that keeps its :class:`AdapterRouter` (one resident
base, adapters swapped per project) for the life of the process. Start one with::

    celery -A worker.celery_app worker -Q inference --pool=solo --concurrency=1

Unlike every other task, its return value matters: it IS the HTTP response of
``POST /api/v1/projects/{id}/predict`` (Celery result backend, ``settings.result_backend_url``).
The request carries the artifact path and sha256 the web resolved, so the worker needs the
artifact store but no database. Expected failures come back as ``{"error": {...}}`` values
rather than exceptions, so the web can answer them with a proper status.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from app.config import Settings, get_settings
from app.domain.model_versions import resolve_artifact
from contract.tasks import TASK_PREDICT
from worker.celery_app import celery_app

log = logging.getLogger(__name__)

PREDICTION_DECIMALS = 7

_router: Any = None
_router_lock = threading.Lock()


def shared_router() -> Any:
    """This process's router (created on first use, so importing this module stays light)."""
    global _router
    with _router_lock:
        if _router is None:
            from worker.ml.adapter_router import AdapterRouter

            _router = AdapterRouter()
        return _router


def predict_body(request: dict[str, Any], router: Any, settings: Settings) -> dict[str, Any]:
    """Score ``request["texts"]`` with the artifact named in the request.

    ``request``: ``artifact_path`` (as stored on the model version), ``sha256``,
    ``model_version_id``, ``version``, ``texts``.
    """
    from contract.errors import MLError

    if "live_head" in request:
        return _predict_live(request, router, settings)
    path = resolve_artifact(str(request["artifact_path"]), settings)
    if not (path / "tapestry.json").is_file():
        return _error("artifact_missing", f"the artifact of model version "
                      f"{request.get('version')} is not in this worker's artifact store ({path})")
    texts = [str(text) for text in request["texts"]]
    try:
        prediction = router.predict(path, texts, cache_key=str(request.get("sha256") or ""))
    except MLError as exc:
        log.warning("inference failed for %s: %s", path, exc)
        return _error("inference_failed", str(exc))
    probabilities = prediction.probabilities.round(PREDICTION_DECIMALS).tolist()
    names = prediction.label_names
    answer = {
        "model_version_id": request["model_version_id"],
        "version": request["version"],
        "label_names": names,
        "labels": [names[row.index(max(row))] for row in probabilities],
        "probabilities": probabilities,
        "shared_base": prediction.shared_base,
    }
    if prediction.thresholds is not None:  # a multi-label adapter: the set at its thresholds
        on = prediction.probabilities >= prediction.thresholds
        answer["label_sets"] = [[names[j] for j, flag in enumerate(row) if flag] for row in on]
        answer["thresholds"] = [round(float(t), PREDICTION_DECIMALS)
                                for t in prediction.thresholds]
    return answer


def _predict_live(request: dict[str, Any], router: Any, settings: Settings) -> dict[str, Any]:
    """The live head (embed with its encoder, apply the head), or its average with the adapter."""
    import numpy as np

    from contract.errors import MLError
    from worker.ml.live_head import LiveHead
    from worker.tasks.live_refit import encoder_for

    live = request["live_head"]
    head_dir = Path(str(live["path"]))
    if (head_dir / "multilabel_head.json").is_file():
        return _predict_multi_label(request, head_dir)
    if not (head_dir / "live_head.json").is_file():
        return _error("artifact_missing", f"the live head is not in this store ({head_dir})")
    texts = [str(text) for text in request["texts"]]
    try:
        head = LiveHead.load(head_dir)
        encoder = encoder_for(str(head.extra["encoder"]), int(head.extra["max_length"]),
                              int(head.extra.get("windows", 1)))
        probs = head.predict_proba(encoder.embed(texts), texts)
        if live.get("served") == "average" and "artifact_path" in request:
            adapter = predict_body({k: v for k, v in request.items() if k != "live_head"},
                                   router, settings)
            if "error" in adapter:
                return adapter
            probs = 0.5 * (probs + np.asarray(adapter["probabilities"]))
    except (MLError, KeyError, OSError, ValueError) as exc:
        log.warning("live-head inference failed for %s: %s", head_dir, exc)
        return _error("inference_failed", str(exc))
    names = list(head.extra.get("label_names", []))
    rounded = np.round(probs, PREDICTION_DECIMALS).tolist()
    return {
        "model_version_id": request.get("model_version_id"),
        "version": request.get("version"),
        "label_names": names,
        "labels": [names[int(i)] for i in np.argmax(probs, axis=1)],
        "probabilities": rounded,
        "shared_base": False,
    }


def _predict_multi_label(request: dict[str, Any], head_dir: Path) -> dict[str, Any]:
    """A multi-label live head: per-label probabilities, and the set at the stored thresholds."""
    import numpy as np

    from contract.errors import MLError
    from worker.ml.multilabel import MultiLabelHead
    from worker.tasks.live_refit import encoder_for

    texts = [str(text) for text in request["texts"]]
    try:
        head = MultiLabelHead.load(head_dir)
        encoder = encoder_for(str(head.extra["encoder"]), int(head.extra["max_length"]),
                              int(head.extra.get("windows", 1)))
        probs = head.predict_proba(encoder.embed(texts))
    except (MLError, KeyError, OSError, ValueError) as exc:
        log.warning("multi-label inference failed for %s: %s", head_dir, exc)
        return _error("inference_failed", str(exc))
    names = list(head.extra.get("label_names", []))
    on = probs >= head.thresholds
    return {
        "model_version_id": request.get("model_version_id"),
        "version": request.get("version"),
        "label_names": names,
        "labels": [names[int(i)] for i in np.argmax(probs, axis=1)],
        "label_sets": [[names[j] for j in np.flatnonzero(row)] for row in on],
        "thresholds": np.round(head.thresholds, PREDICTION_DECIMALS).tolist(),
        "probabilities": np.round(probs, PREDICTION_DECIMALS).tolist(),
        "shared_base": False,
    }


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


@celery_app.task(
    name=TASK_PREDICT,
    ignore_result=False,  # the one task whose result is read (by the waiting web request)
    acks_late=False,  # the caller has a deadline: a lost request is not worth redelivering
    reject_on_worker_lost=False,
)
def predict(request: dict[str, Any]) -> dict[str, Any]:
    """Celery shell around :func:`predict_body` with this process's resident router."""
    return predict_body(request, shared_router(), get_settings())
