"""The one error every validator raises: an AssertionError, so a failed check reads as a test failure."""

from __future__ import annotations


class SchemaError(AssertionError):
    """An object (or Helm value) the real API server (or chart) would refuse; the message names the field."""
