"""What the web process and the workers agree on, in one torch- and numpy-free package.

Both sides import it; it imports neither ``app`` nor ``worker`` (only the standard library), so
the web process can validate settings, plan budgets and enqueue jobs without loading the ML stack.
``tests/test_architecture.py`` checks both rules. See ``docs/architecture.md``.

- ``errors``: the ML core's error types (``MLError``, ``ConfigError``, ``NotSupported``,
  ``Cancelled``), which the web maps to form errors and the task layer to run states.
- ``budget``: the label budget plan (next batch size and phase, the polish reserve).
- ``config_base``: what the dataclass configs share (dict round trips, common checks).
- ``adapter_config``: ``AdapterConfig``, validated up front for every adapter kind.
- ``strategies``: the acquisition strategy catalogue (names, descriptions, default, aliases).
- ``tasks``: Celery task names and the queue each is routed to.
"""
