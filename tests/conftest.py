"""Shared fixtures: the stacks captured once per session under Pulumi mocks (preview=False)."""

from __future__ import annotations

import pytest

from mlplatform.capture import Capture, capture_stack


@pytest.fixture(scope="session")
def dev() -> Capture:
    capture = capture_stack("dev")
    # Guard against a vacuous pass: a run that registered nothing would satisfy every "for all" check.
    assert len(capture.kubernetes_objects()) > 10
    return capture


@pytest.fixture(scope="session")
def dev_one_worker() -> Capture:
    """The dev stack training with one worker: a batch Job and a plain CronJob instead of a JobSet."""
    return capture_stack("dev", {"recommenderTrainingWorkers": 1})
