"""Annotation: hand out the next item under a lease, record labels, skips, undo and edits, and
close batches, which request a retrain.

* :mod:`.leases` — the next item (queue by rank, else random pool items), skip and release;
* :mod:`.labels` — label (idempotent), undo, edit, recent labels;
* :mod:`.batches` — batch progress, automatic and manual submission, queue status;
* :mod:`.views` — the values the annotator view renders.

Every function only flushes; the request dependency commits. The annotator view's hot routes
commit early, right after the writes and before reading and rendering what they show, so the
SQLite write lock is held for the writes alone (:func:`.common.take_write_lock`).
"""

from app.domain.annotation.batches import (
    batch_progress,
    batch_target,
    queue_status,
    submit_batch,
)
from app.domain.annotation.common import (
    batch_id_for,
    project_labels,
    take_write_lock,
)
from app.domain.annotation.labels import edit_annotation, recent_labels, record_label, undo_last
from app.domain.annotation.leases import (
    MAX_EXCLUDE,
    Leased,
    lease_next,
    next_item,
    release_leases,
    show,
    skip_item,
)
from app.domain.annotation.views import (
    MAX_DURATION_MS,
    RESERVED_KEYS,
    UI_SOURCE,
    BatchProgress,
    ItemView,
    LabelResult,
    Neighbour,
    NoItem,
    Prediction,
    QueueStatus,
    RecentLabel,
    WhyThisItem,
    clamp_duration,
    label_keys,
    snippet,
)
from app.domain.policy import labels_used

__all__ = [
    "MAX_DURATION_MS",
    "MAX_EXCLUDE",
    "RESERVED_KEYS",
    "UI_SOURCE",
    "BatchProgress",
    "ItemView",
    "LabelResult",
    "Leased",
    "Neighbour",
    "NoItem",
    "Prediction",
    "QueueStatus",
    "RecentLabel",
    "WhyThisItem",
    "batch_id_for",
    "batch_progress",
    "batch_target",
    "clamp_duration",
    "edit_annotation",
    "label_keys",
    "labels_used",
    "lease_next",
    "next_item",
    "project_labels",
    "queue_status",
    "recent_labels",
    "record_label",
    "release_leases",
    "show",
    "skip_item",
    "snippet",
    "submit_batch",
    "take_write_lock",
    "undo_last",
]
