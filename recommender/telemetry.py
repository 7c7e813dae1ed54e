"""Prometheus metrics and JSON logs of the server."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, PlatformCollector, ProcessCollector

__all__ = ["JsonFormatter", "Metrics", "configure_logging"]

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; `extra={...}` fields are merged in (e.g. model_version)."""

    _RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
        "message", "asctime", "color_message",  # uvicorn's ANSI-coloured copy of msg
    }

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in self._RESERVED and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def configure_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


class Metrics:
    """The server's metrics in their own registry; label children are cached for the hot path."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        r = self.registry
        self.requests = Counter(
            "recommender_requests_total", "HTTP requests", ["route", "method", "status"], registry=r
        )
        self.latency = Histogram("recommender_request_duration_seconds", "HTTP request latency",
                                 ["route", "status"], buckets=_BUCKETS, registry=r)  # fmt: skip
        self.model_info = Info("recommender_model", "The model version being served", registry=r)
        self.model_ready = Gauge("recommender_model_ready", "1 once a verified model is loaded", registry=r)
        self.load_seconds = Gauge("recommender_model_load_seconds", "Load+verify time of the current model", registry=r)
        self.reloads = Counter("recommender_model_reloads_total", "Model load attempts", ["result"], registry=r)
        self.last_reload_ok = Gauge("recommender_model_last_reload_success",
                                    "1 if the last load succeeded, 0 if it was refused", registry=r)  # fmt: skip
        self.last_reload_time = Gauge("recommender_model_last_reload_timestamp_seconds",
                                      "Unix time of the last load attempt", registry=r)  # fmt: skip
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        child = self._children.get(key)
        if child is None:
            child = (self.requests.labels(route, method, str(status)), self.latency.labels(route, str(status)))
            self._children[key] = child
        child[0].inc()
        child[1].observe(seconds)

    def reload(self, ok: bool) -> None:
        self.reloads.labels("success" if ok else "failed").inc()
        self.last_reload_ok.set(1 if ok else 0)
        self.last_reload_time.set(time.time())
