"""Kueue as the pack reads it: the queue label and the LocalQueues the stack creates."""

from __future__ import annotations

from typing import Any

from .context import StackContext
from .model import get_path

__all__ = ["KUEUE_GROUP", "QUEUE_NAME_LABEL", "local_queues", "queue_label_fix"]

QUEUE_NAME_LABEL = "kueue.x-k8s.io/queue-name"
KUEUE_GROUP = "kueue.x-k8s.io"


def local_queues(ctx: StackContext, namespace: str) -> list[str]:
    return sorted(str(get_path(q.props, "metadata", "name")) for q in ctx.of_kind(KUEUE_GROUP, "LocalQueue", namespace))


def queue_label_fix(queue: Any, queues: list[str], where: str) -> str | None:
    """What to change so ``queue`` (a label value, maybe absent) names one of ``queues``; None if it does.
    With no LocalQueue in the stack any name passes (the queue may come from elsewhere)."""
    if not queue:
        return f"add label {QUEUE_NAME_LABEL}: {queues[0] if queues else '<local queue>'} to {where}"
    if queues and queue not in queues:
        return f"label {QUEUE_NAME_LABEL}: {queue!r} names no LocalQueue of the stack; use one of {', '.join(queues)}"
    return None
