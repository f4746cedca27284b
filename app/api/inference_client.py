"""How the web process gets predictions: send ``inference.predict`` by name and wait for its result.

The web never imports torch, so it cannot predict itself. It sends the task to the ``inference``
queue and blocks (in FastAPI's thread pool) on the Celery result backend for at most
``settings.inference_timeout_seconds``. The message expires at the same deadline, so a worker that
comes back later does not spend GPU time on an answer nobody waits for.

Tests and embedded tools replace the client through ``app.state.inference_client`` (for example,
one that runs the task body in-process).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from fastapi import Request

from app.errors import Conflict, DomainError
from contract.tasks import QUEUE_INFERENCE, TASK_PREDICT

if TYPE_CHECKING:
    from celery import Celery

POLL_SECONDS = 0.05


class InferenceUnavailable(DomainError):
    code = "inference_unavailable"
    status_code = 503


class InferenceFailed(DomainError):
    code = "inference_failed"
    status_code = 502


class ArtifactUnavailable(Conflict):
    code = "artifact_missing"


class InferenceClient(Protocol):
    def predict(self, request: dict[str, Any], *, timeout: float) -> dict[str, Any]:
        """The worker's answer to ``request`` (see ``worker.tasks.inference.predict_body``)."""
        ...


class CeleryInferenceClient:
    """Send to the ``inference`` queue and wait on the result backend.

    ``celery``: the app to send through; default the process-wide one (configured from the
    same settings as the web app).
    """

    def __init__(self, celery: Celery | None = None) -> None:
        self._celery = celery

    def predict(self, request: dict[str, Any], *, timeout: float) -> dict[str, Any]:
        from celery.exceptions import TimeoutError as ResultTimeout

        if self._celery is None:
            from worker.celery_app import celery_app

            self._celery = celery_app
        try:
            result = self._celery.send_task(
                TASK_PREDICT, args=[request], queue=QUEUE_INFERENCE, expires=timeout
            )
        except Exception as exc:  # broker down: same answer as "nobody listening"
            raise InferenceUnavailable(
                "The task broker is unreachable, so no prediction can be made right now.",
                details={"reason": type(exc).__name__},
            ) from exc
        try:
            value = result.get(timeout=timeout, propagate=False, interval=POLL_SECONDS)
        except ResultTimeout:
            raise InferenceUnavailable(
                f"No inference worker answered within {timeout:g} s. Start one with "
                "`celery -A worker.celery_app worker -Q inference`, or retry later.",
                details={"timeout_seconds": timeout},
            ) from None
        finally:
            result.forget()
        if not isinstance(value, dict):
            raise InferenceFailed(
                "The inference worker failed on this request; the error is in its log.",
                details={"reason": type(value).__name__},
            )
        return value


def get_inference_client(request: Request) -> InferenceClient:
    client: InferenceClient | None = getattr(request.app.state, "inference_client", None)
    return client if client is not None else CeleryInferenceClient()


def raise_for_worker_error(answer: dict[str, Any]) -> None:
    """Turn an ``{"error": ...}`` answer into the matching domain error."""
    error = answer.get("error")
    if not isinstance(error, dict):
        return
    code = str(error.get("code", "inference_failed"))
    message = str(error.get("message", "inference failed"))
    if code == ArtifactUnavailable.code:
        raise ArtifactUnavailable(message)
    raise InferenceFailed(message, details={"code": code})
