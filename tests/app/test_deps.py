"""The annotator-view request slots (``app.deps.annotator_slot``)."""

from __future__ import annotations

import asyncio
import secrets
from types import SimpleNamespace
from typing import Any

import pytest

from app.deps import annotator_slot
from app.main import create_app


def _request(concurrency: int) -> Any:
    settings = SimpleNamespace(annotator_concurrency=concurrency)
    return SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(settings=settings)))


def _run(concurrency: int, holds: dict[str, float]) -> list[tuple[str, str]]:
    events: list[tuple[str, str]] = []
    request = _request(concurrency)

    async def one(name: str, hold: float) -> None:
        slot = annotator_slot(request)
        await anext(slot)
        events.append(("start", name))
        await asyncio.sleep(hold)
        events.append(("end", name))
        with pytest.raises(StopAsyncIteration):
            await anext(slot)

    async def main() -> None:
        await asyncio.gather(*(one(name, hold) for name, hold in holds.items()))

    asyncio.run(main())
    return events


def test_one_slot_serves_requests_one_at_a_time_in_arrival_order() -> None:
    events = _run(1, {"a": 0.05, "b": 0.0, "c": 0.0})
    assert events == [("start", "a"), ("end", "a"), ("start", "b"), ("end", "b"),
                      ("start", "c"), ("end", "c")]


def test_two_slots_let_two_requests_overlap() -> None:
    events = _run(2, {"a": 0.05, "b": 0.05, "c": 0.0})
    assert events[:2] == [("start", "a"), ("start", "b")]
    assert events.index(("start", "c")) > events.index(("end", "a"))


def test_every_annotator_view_route_takes_a_slot(tmp_path: Any) -> None:
    from fastapi.routing import iter_route_contexts

    from app.config import Settings

    app = create_app(Settings(data_dir=tmp_path, secret_key=secrets.token_urlsafe(48)))
    contexts = [c for c in iter_route_contexts(app.routes) if "/annotate" in (c.path or "")]
    assert len(contexts) >= 8
    for context in contexts:
        calls = [d.call for d in context.dependant.dependencies]
        assert annotator_slot in calls, context.path
