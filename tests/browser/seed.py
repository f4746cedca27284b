"""Data for the browser tests (and the screenshots): users, three projects, rounds and a model.

* "News topics" — a small learnable pool (sentences carrying the tiny BERT's topic words) with a
  labelled dev set; the annotator labels it in the browser and a real worker retrains on it.
* "Support tickets" — a project a few rounds in: round metrics, a current model with its adapter
  card, annotations from three people (throughput) with overlaps (agreement), and one disputed
  item whose text is hostile markup.
* "Markup check" — a single queued item whose text is hostile markup.
* "Customer feedback" — a queue with the model's guesses, long texts and neighbours: the
  annotator layout at 390 px, the dark scheme and accepting a guess with Enter.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from sqlalchemy.orm import Session

from app.config import Settings
from app.db.base import utcnow
from app.db.models import (
    SPLIT_DEV,
    SPLIT_POOL,
    VERSION_PROMOTED,
    Annotation,
    Item,
    Label,
    Membership,
    ModelVersion,
    Project,
    QueueEntry,
    RoundMetric,
    User,
)
from app.domain.users import create_user
from worker.ml.cards import AdapterCard

PASSWORD = "browser-test-password"
XSS_TEXT = ("Order #7 arrived broken. <script>alert(1)</script> Photo attached: "
            "<img src=x onerror=alert(1)> Please advise.")
TINY_TRAIN_CONFIG = {"epochs": 2, "batch_size": 8, "max_length": 32, "eval_batch_size": 32}

SENTENCES = {
    "sports": [
        "The home team scored a late goal to win the league match.",
        "Their coach said the players showed a big win mentality today.",
        "A new player joined the team before the league match on Sunday.",
        "The match ended with a score of three goals to one for the visitors.",
        "Fans cheered as the team took the lead in the final minutes of the match.",
        "The league announced that the coach of the year is a former player.",
    ],
    "finance": [
        "The bank raised its loan rates as the bond market fell today.",
        "Stock prices rose after the company reported a big profit.",
        "Traders said the market price of the bond dropped on Friday.",
        "The bank reported a record profit from trade and loan fees.",
        "A new stock trade rule will change how the market sets a price.",
        "Investors sold the bond as the loan market turned very weak.",
    ],
    "science": [
        "The lab published new data on how a cell uses energy.",
        "Researchers found a gene that changes the theory of cell growth.",
        "The orbit of the probe gives the lab very good data on the atom.",
        "A new theory explains the energy of an atom in orbit.",
        "The gene data from the lab supports the cell theory today.",
        "Scientists measured the energy of the orbit with new lab data.",
    ],
}
TICKETS = {
    "billing": "I was charged twice for my subscription this month; please refund one payment.",
    "bug": "The export button crashes the app when the report has more than 500 rows.",
    "feature request": "It would help if we could schedule reports to be emailed every Monday.",
    "account": "I cannot log in after changing my email address; the reset link expired.",
    "other": "Where can I find your security whitepaper for our procurement team?",
}


@dataclass
class Seeded:
    password: str = PASSWORD
    users: dict[str, str] = field(default_factory=dict)
    """role name -> e-mail"""
    user_ids: dict[str, int] = field(default_factory=dict)
    topics_id: int = 0
    tickets_id: int = 0
    markup_id: int = 0
    feedback_id: int = 0
    rounds: int = 0


def _item(project: Project, text: str, split: str = SPLIT_POOL) -> Item:
    return Item(project_id=project.id, text=text, split=split,
                content_hash=hashlib.sha256(text.encode()).hexdigest())


def _project(db: Session, name: str, labels: list[str], lead: User, **fields: object) -> Project:
    project = Project(name=name, created_by_id=lead.id, **fields)
    db.add(project)
    db.flush()
    palette = ["#4f46e5", "#0891b2", "#059669", "#ca8a04", "#dc2626", "#db2777"]
    keys = "123456789"
    db.add_all([Label(project_id=project.id, name=n, position=i, color=palette[i % 6],
                      shortcut=keys[i]) for i, n in enumerate(labels)])
    db.add(Membership(project_id=project.id, user_id=lead.id, role="lead"))
    db.flush()
    return project


def _labels(db: Session, project: Project) -> list[Label]:
    from app.domain.projects import get_labels

    return get_labels(db, project.id)


def topic_corpus(n: int, seed: int) -> list[tuple[str, str]]:
    """``n`` distinct (text, topic) pairs: a sentence plus a varying clause, topics round-robin."""
    rng = random.Random(seed)
    tails = ["", " Reports say more will follow.", " More on this story later.",
             " The details were confirmed on Monday.", " Analysts expect news next week.",
             " Readers sent many questions."]
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    topics = list(SENTENCES)
    while len(out) < n:
        topic = topics[len(out) % len(topics)]
        text = rng.choice(SENTENCES[topic]) + rng.choice(tails) + f" (#{len(out) + 1})"
        if text not in seen:
            seen.add(text)
            out.append((text, topic))
    return out


def seed_all(db: Session, settings: Settings, tiny_model: Path) -> Seeded:
    seeded = Seeded()
    people: dict[str, User] = {}
    for key, role, name in (("admin", "admin", "Ada Admin"), ("lead", "lead", "Lea Lead"),
                            ("annotator", "annotator", "Ann Otator"),
                            ("ann2", "annotator", "Bo Berg"), ("ann3", "annotator", "Cy Chen")):
        user = create_user(db, email=f"{key}@example.org", password=PASSWORD, role=role,
                           name=name)
        people[key] = user
        seeded.users[key] = user.email
        seeded.user_ids[key] = user.id
    seeded.topics_id = _seed_topics(db, people, tiny_model)
    seeded.tickets_id, seeded.rounds = _seed_tickets(db, settings, people, tiny_model)
    seeded.markup_id = _seed_markup(db, people)
    seeded.feedback_id = _seed_feedback(db, people)
    db.flush()
    return seeded


def _seed_topics(db: Session, people: dict[str, User], tiny_model: Path) -> int:
    project = _project(
        db, "News topics", list(SENTENCES), people["lead"], base_model=str(tiny_model),
        train_config=dict(TINY_TRAIN_CONFIG), batch_size=10, label_budget=300,
        strategy="entropy",
        guidelines="Pick the main topic of the article.\n\n• sports: games, teams, players\n"
                   "• finance: markets, banks, companies\n• science: research, labs, space\n\n"
                   "If an article mixes topics, choose the one in the first sentence. "
                   "Skip (s) when none fits.",
    )
    db.add(Membership(project_id=project.id, user_id=people["annotator"].id, role="annotator"))
    labels = {label.name: label for label in _labels(db, project)}
    corpus = topic_corpus(75, seed=11)
    pool = [_item(project, text) for text, _ in corpus[:60]]
    dev = [_item(project, text, SPLIT_DEV) for text, _ in corpus[60:]]
    db.add_all(pool + dev)
    db.flush()
    for item, (_, topic) in zip(dev, corpus[60:], strict=True):
        db.add(Annotation(project_id=project.id, item_id=item.id, label_id=labels[topic].id,
                          annotator_id=people["lead"].id, source="seed"))
    return project.id


ROUND_POINTS = [(100, 0.52, 0.43), (200, 0.64, 0.58), (300, 0.72, 0.688), (400, 0.741, 0.6902),
                (500, 0.744, 0.6915), (600, 0.745, 0.6925)]
"""(labels, dev accuracy, dev macro-F1): a curve that flattens, so the dev-gain rule fires."""


def _seed_tickets(db: Session, settings: Settings, people: dict[str, User], tiny_model: Path
                  ) -> tuple[int, int]:
    names = list(TICKETS)
    project = _project(
        db, "Support tickets", names, people["lead"], base_model=str(tiny_model),
        train_config=dict(TINY_TRAIN_CONFIG), batch_size=100, label_budget=1000,
        strategy="cluster_uncertain", annotations_per_item=2, stop_threshold=0.2,
        guidelines="Route each ticket to the team that can act on it.",
        description="Customer support inbox, routed by topic.",
    )
    for key in ("annotator", "ann2", "ann3"):
        db.add(Membership(project_id=project.id, user_id=people[key].id, role="annotator"))
    labels = _labels(db, project)
    rng = random.Random(5)
    weights = [0.3, 0.25, 0.2, 0.15, 0.1]
    texts = [f"{TICKETS[rng.choices(names, weights)[0]]} (ticket {1000 + i})" for i in range(640)]
    texts[7] = XSS_TEXT
    items = [_item(project, t) for t in texts]
    db.add_all(items)
    db.flush()
    now = utcnow()
    annotators = [people["annotator"], people["ann2"], people["ann3"]]
    for i, item in enumerate(items[:600]):
        gold = next(j for j, n in enumerate(names) if item.text.startswith(TICKETS[n])) \
            if item.text != XSS_TEXT else 1
        first = annotators[i % 3]
        created = now - timedelta(minutes=600 - i)
        db.add(Annotation(project_id=project.id, item_id=item.id, label_id=labels[gold].id,
                          annotator_id=first.id, source="ui",
                          duration_ms=rng.randint(2500, 9000) + 1500 * (i % 3),
                          created_at=created))
        if i % 10 == 7:  # overlap for agreement: a second annotator, mostly agreeing
            second = annotators[(i + 1) % 3]
            other = gold if rng.random() < 0.8 or item.text == XSS_TEXT else (gold + 1) % 5
            if item.text == XSS_TEXT:
                other = 0
            db.add(Annotation(project_id=project.id, item_id=item.id, label_id=labels[other].id,
                              annotator_id=second.id, source="ui",
                              duration_ms=rng.randint(3000, 8000), created_at=created))
    db.flush()
    version = _model_version(db, settings, project, names, tiny_model)
    _rounds(db, project, names, version)
    return project.id, len(ROUND_POINTS)


def _model_version(db: Session, settings: Settings, project: Project, names: list[str],
                   tiny_model: Path) -> ModelVersion:
    folder = settings.artifacts / "projects" / str(project.id) / "versions" / "v0006"
    (folder / "adapter").mkdir(parents=True, exist_ok=True)
    card = AdapterCard(
        base_model=str(tiny_model), base_model_sha256="3f1c9a" * 10 + "d2e4",
        adapter_type="lora",
        adapter_config={"kind": "lora", "r": 8, "alpha": 16, "dropout": 0.1,
                        "targets": "attention"},
        labels=names, train_config={"epochs": 3, "lr": 0.001, "batch_size": 16},
        seeds={"train": 0}, dev_metrics={"accuracy": 0.745, "macro_f1": 0.6925, "ece": 0.041},
        trainable_params=148_229, total_params=22_861_957, training_examples=600,
    )
    (folder / "README.md").write_text(card.render(), encoding="utf-8")
    (folder / "tapestry.json").write_text(json.dumps({"labels": names}), encoding="utf-8")
    (folder / "adapter" / "adapter_model.safetensors").write_bytes(b"\0" * 1024)
    version = ModelVersion(project_id=project.id, version=6, artifact_path=str(folder),
                           adapter_kind="lora", labels_used=600, data_version=6,
                           status=VERSION_PROMOTED, promoted_at=utcnow(),
                           metrics={"dev_accuracy": 0.745, "dev_macro_f1": 0.6925})
    db.add(version)
    db.flush()
    project.current_model_version_id = version.id
    project.data_version = 6
    return version


def _rounds(db: Session, project: Project, names: list[str], version: ModelVersion) -> None:
    k = len(names)
    support = [36, 30, 24, 18, 12]
    start = utcnow() - timedelta(hours=12)
    for r, (used, accuracy, f1) in enumerate(ROUND_POINTS):
        per_class = {n: round(min(0.95, f1 + 0.12 - 0.06 * j), 3) for j, n in enumerate(names)}
        confusion = []
        for i in range(k):
            right = round(support[i] * (accuracy + 0.1 - 0.04 * i))
            row = [0] * k
            row[i] = right
            rest = support[i] - right
            row[(i + 1) % k] += rest // 2
            row[(i + 2) % k] += rest - rest // 2
            confusion.append(row)
        last = r == len(ROUND_POINTS) - 1
        db.add(RoundMetric(
            project_id=project.id, labels_used=used, dev_accuracy=accuracy, macro_f1=f1,
            model_version_id=version.id if last else None,
            per_class_f1=per_class, confusion=confusion, details={"dev_n": sum(support)},
            created_at=start + timedelta(hours=2 * r),
            stop_recommendations=_stop_rules(r, used),
        ))
    db.flush()


def _stop_rules(r: int, used: int) -> list[dict[str, object]]:
    """What the worker's stop rules would say after round ``r`` (window of 3 rounds)."""
    window = ROUND_POINTS[max(0, r - 3): r + 1]
    gain = None
    if len(window) > 1:
        (u0, _, f0), (u1, _, f1) = window[0], window[-1]
        gain = (f1 - f0) * 100 / ((u1 - u0) / 100)
    dev = (f"macro-F1 rose {gain:.2f} points per 100 labels over the last {len(window) - 1} "
           "rounds (threshold 0.20)") if gain is not None else "needs two rounds"
    return [
        {"rule": "dev_gain", "fire": gain is not None and gain < 0.2, "evidence": dev,
         "values": {"gain_per_100": round(gain, 3) if gain is not None else None}},
        {"rule": "budget", "fire": False,
         "evidence": f"{used} of 1000 labels used ({1000 - used} left, 150 held in reserve)",
         "values": {}},
        {"rule": "acquisition_agreement", "fire": False,
         "evidence": "top-k overlap of entropy and the project's strategy still moving "
                     "(0.31 → 0.38 over 3 rounds, tolerance 0.05)",
         "values": {}},
    ]


def _seed_markup(db: Session, people: dict[str, User]) -> int:
    project = _project(db, "Markup check", ["safe", "unsafe"], people["lead"],
                       batch_size=50, label_budget=100)
    db.add(Membership(project_id=project.id, user_id=people["annotator"].id, role="annotator"))
    hostile = _item(project, XSS_TEXT)
    neighbour = _item(project, "Earlier ticket: <img src=x onerror=alert(1)> was pasted here.")
    db.add_all([hostile, neighbour])
    db.flush()
    safe = _labels(db, project)[0]
    db.add(Annotation(project_id=project.id, item_id=neighbour.id, label_id=safe.id,
                      annotator_id=people["lead"].id, source="seed"))
    db.add(QueueEntry(project_id=project.id, queue_version=1, item_id=hostile.id, rank=0,
                      score=0.97, strategy="entropy", reason="highest entropy <b>in pool</b>",
                      predicted=[{"label": "safe", "prob": 0.51},
                                 {"label": "unsafe", "prob": 0.49}],
                      neighbours=[{"item_id": neighbour.id, "label": "safe", "similarity": 0.88}]))
    project.queue_version = 1
    db.flush()
    return project.id


FEEDBACK = [
    ("praise", "The new dashboard is fantastic. Our support team found the export settings in "
               "seconds, and the weekly summary e-mail finally shows the numbers our managers "
               "ask about every Monday morning. Thank you for listening to the feedback from "
               "the beta programme; please keep the keyboard shortcuts exactly as they are."),
    ("complaint", "Since the last update the mobile app logs me out every time I switch to "
                  "another app, and the two-factor code arrives only after the form has timed "
                  "out. I have tried reinstalling twice. This is the third week in a row."),
    ("question", "Can we connect two workspaces to the same billing account, and if so, do "
                 "the seats add up or does each workspace need its own minimum?"),
    ("praise", "Setup took ten minutes and the import wizard detected every column of our "
               "spreadsheet correctly."),
    ("complaint", "Invoice 2024-117 charges us for 40 seats although we removed 12 users in "
                  "March; please correct it and tell us how to avoid this next quarter."),
    ("question", "Is there an API endpoint to export tagged conversations as CSV, with the "
                 "tags in separate columns?"),
]
"""(true label, text): long enough to wrap over several lines on a phone."""


def _seed_feedback(db: Session, people: dict[str, User]) -> int:
    names = ["praise", "complaint", "question", "feature idea"]
    project = _project(db, "Customer feedback", names, people["lead"], batch_size=20,
                       label_budget=200, guidelines="What is the customer telling us?")
    db.add(Membership(project_id=project.id, user_id=people["annotator"].id, role="annotator"))
    seeds = [_item(project, f"Earlier message {i}: {text[:70]}") for i, (_, text) in
             enumerate(FEEDBACK[:3])]
    queued = [_item(project, text) for _, text in FEEDBACK]
    db.add_all(seeds + queued)
    db.flush()
    labels = {label.name: label for label in _labels(db, project)}
    for seed_item, (name, _) in zip(seeds, FEEDBACK[:3], strict=True):
        db.add(Annotation(project_id=project.id, item_id=seed_item.id,
                          label_id=labels[name].id, annotator_id=people["lead"].id,
                          source="seed"))
    for rank, (item, (name, _)) in enumerate(zip(queued, FEEDBACK, strict=True)):
        others = [n for n in names if n != name]
        probs = [(name, 0.62), (others[0], 0.21), (others[1], 0.12), (others[2], 0.05)]
        db.add(QueueEntry(
            project_id=project.id, queue_version=1, item_id=item.id, rank=rank,
            score=round(0.8 - 0.05 * rank, 3), strategy="margin",
            reason=f"margin {0.41 - 0.02 * rank:.2f} between the top two classes",
            predicted=[{"label": n, "prob": p} for n, p in probs],
            neighbours=[{"item_id": seeds[j].id, "label": FEEDBACK[j][0],
                         "similarity": round(0.81 - 0.07 * j, 2)} for j in range(3)]))
    project.queue_version = 1
    db.flush()
    return project.id
