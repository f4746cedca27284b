"""Tapestry's pure ML core: TAPT, adapters on a frozen encoder, training, scoring, artifacts.

This package imports nothing from ``app/``, Celery or the database. It takes texts, labels and
configs, and returns arrays, metrics and artifact directories; ``worker/tasks`` is the only bridge.
Import submodules directly (``from worker.ml.training import train_classifier``). What the web
shares with this core (errors, budget plan, config bases, ``AdapterConfig``, the strategy
catalogue) lives in the torch-free ``contract`` package.

Where things live:
- ``models``: base model ids/aliases ("minilm"), fingerprints, loading; ``architecture``: finding
  layers, projections and heads generically; ``runtime``: device, mixed precision, seeds.
- ``batching``: tokenisation, length-bucketed batches; ``schedule``: warmup + cosine LR.
- ``adapters/``: ``peft_kinds`` (LoRA, IA3, prompt), ``bottleneck``
  (our Houlsby adapters), ``build`` (freezing and parameter groups).
- ``training`` (TrainConfig, train_classifier), ``classifier`` (TextClassifier, PoolScores),
  ``layer_cache`` (LowerLayerCache), ``evaluation`` (metrics).
- ``tapt`` (TaptConfig, run_tapt) with ``masking``, ``mlm_loss``, ``tapt_state``;
  ``surprisal`` (ALPS embeddings for cold start).
- ``artifacts`` (save/load/write/zip) and ``cards`` (adapter cards); ``progress``.
- ``pooling`` (mean_pool, MeanPooler); ``queue_view`` (top predictions, nearest labelled items).
"""
