"""Exceptions that the CLI turns into one-line errors with a documented exit code."""

from __future__ import annotations

from recommender.contract import EXIT_BAD_INPUT, EXIT_GATE_FAILED, EXIT_REGISTRY

__all__ = ["GateFailedError", "InputError", "RecommenderError", "RegistryError"]


class RecommenderError(Exception):
    """Base class: the message is shown to the user as is, `exit_code` is the process exit code."""

    exit_code = 1


class InputError(RecommenderError):
    """Bad user input: a file, a column, a value. The message names the field and the fix."""

    exit_code = EXIT_BAD_INPUT


class GateFailedError(RecommenderError):
    """The evaluation gate (--min-lift) rejected the model."""

    exit_code = EXIT_GATE_FAILED


class RegistryError(RecommenderError):
    """The registry cannot do what was asked (unknown name, corrupt version, no previous alias)."""

    exit_code = EXIT_REGISTRY
