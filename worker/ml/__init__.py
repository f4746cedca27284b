"""Tapestry's pure ML core: TAPT, adapters on a frozen encoder, training, scoring, artifacts.

This package imports nothing from ``app/``, Celery or the database. It takes texts, labels and
configs, and returns arrays, metrics and artifact directories; ``worker/tasks`` is the only bridge.
Import submodules directly (``from worker.ml.training import train_classifier``): the package
itself stays import-light so that helpers such as ``worker.ml.errors`` never pull in torch.
"""
