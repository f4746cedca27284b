"""Errors raised by the ML core, so that the task layer can map them to run states."""

from __future__ import annotations


class MLError(Exception):
    """Base class of every error the ML core raises on purpose."""


class ConfigError(MLError, ValueError):
    """A configuration value is invalid; the message says which field and what is allowed."""


class NotSupported(MLError):
    """A feature or model architecture that Tapestry deliberately does not support."""


class Cancelled(MLError):
    """The injected reporter asked a long-running job to stop; raised between steps."""
