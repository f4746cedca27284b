"""Tapestry workers: the Celery app, task bridge (tasks/) and the pure ML core (ml/)."""
