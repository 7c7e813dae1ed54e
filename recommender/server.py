"""A lean ASGI app (no framework on the hot path) run by uvicorn with httptools and uvloop.

The also-bought lookup is a dict lookup returning precomputed bytes; everything else is small
JSON handling. A background task watches the registry alias and swaps in a new model only
after it loaded completely and its checksum matched; requests in flight keep the old one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from recommender import __version__
from recommender.contract import LIVE_PATH, METRICS_PATH, READY_PATH
from recommender.errors import RecommenderError
from recommender.openapi import openapi_document
from recommender.registry import Registry
from recommender.serving import DEFAULT_K, MAX_BASKET, MAX_K, ModelState, load_state
from recommender.telemetry import Metrics, configure_logging

__all__ = ["App", "ServerConfig", "run"]

log = logging.getLogger("recommender.server")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_JSON = [(b"content-type", b"application/json")]
_BOOKS, _ALSO = "/v1/books/", "/also-bought"
_MODELS, _PREDICT = "/v1/models/", ":predict"


@dataclass(frozen=True)
class ServerConfig:
    registry: Path
    model: str
    alias: str = "production"
    host: str = "127.0.0.1"
    port: int = 8080
    poll_seconds: float = 5.0
    max_body_bytes: int = 1 << 20
    access_log: bool = False


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _parse_k(raw: object) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise HttpError(422, f"k must be an integer between 1 and {MAX_K}")
    try:
        k = int(raw)
    except ValueError:
        raise HttpError(422, f"k must be an integer between 1 and {MAX_K}, got {raw!r}") from None
    if not 1 <= k <= MAX_K:
        raise HttpError(422, f"k must be between 1 and {MAX_K}, got {k}")
    return k


def _k_from_query(qs: bytes) -> int:
    if not qs:
        return DEFAULT_K
    if qs.startswith(b"k=") and b"&" not in qs and qs[2:].isdigit() and len(qs) < 8:
        return _parse_k(int(qs[2:]))  # fast path for the common `?k=10`
    values = parse_qs(qs.decode("latin-1"), keep_blank_values=True).get("k")
    return DEFAULT_K if not values else _parse_k(values[-1])


def _basket(doc: object, where: str) -> tuple[list[str], int]:
    if isinstance(doc, list):
        doc = {"books": doc}
    if not isinstance(doc, dict):
        raise HttpError(422, f"{where} must be an object with a 'books' list")
    books = doc.get("books")
    if not isinstance(books, list) or not all(isinstance(b, str) for b in books):
        raise HttpError(422, f"{where}.books must be a list of book id strings")
    if len(books) > MAX_BASKET:
        raise HttpError(422, f"{where}.books has {len(books)} ids; at most {MAX_BASKET}")
    return books, _parse_k(doc.get("k", DEFAULT_K))


_FIXED_ROUTES = frozenset({LIVE_PATH, READY_PATH, METRICS_PATH, "/v2/health/live", "/v2/health/ready",
                           "/openapi.json", "/v1/recommendations"})


def _route_of(path: str) -> str:
    """The route template for metrics labels (bounded cardinality: never the raw path)."""
    if path in _FIXED_ROUTES:
        return path
    if path.startswith(_MODELS):
        return "/v1/models/{name}:predict" if path.endswith(_PREDICT) else "/v1/models/{name}"
    return "unmatched"


class App:
    """The ASGI application; `state` is None until a verified model is loaded."""

    def __init__(self, config: ServerConfig, metrics: Metrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or Metrics()
        self.registry = Registry(config.registry)
        self.state: ModelState | None = None
        self.not_ready_reason = "no model loaded yet"
        self._refused: str | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._openapi = orjson.dumps(openapi_document(__version__, config.model))

    # -- model lifecycle --------------------------------------------------------------------

    async def refresh(self) -> None:
        """One poll: load the aliased version if it changed (in a thread), swap on success."""
        cfg = self.config
        try:
            alias = await asyncio.to_thread(self.registry.alias, cfg.model, cfg.alias)
        except RecommenderError as err:
            self._note_missing(f"alias unreadable: {err}")
            return
        if alias is None:
            self._note_missing(f"alias {cfg.alias!r} of model {cfg.model!r} not found under {cfg.registry}")
            return
        version = alias.version
        current = self.state.version if self.state else None
        if version in (current, self._refused):
            return
        try:
            path = self.registry.version_dir(cfg.model, version)
            state = await asyncio.to_thread(load_state, path, version)
        except (RecommenderError, OSError) as err:
            self._refused = version
            self.metrics.reload(False)
            log.error("model version refused; keeping the current one",
                      extra={"model_version": current, "refused_version": version, "reason": str(err)})  # fmt: skip
            if self.state is None:
                self.not_ready_reason = f"version {version[:12]} refused: {err}"
            return
        self.state = state  # one reference swap: requests in flight keep the old model
        self._refused = None
        self.metrics.reload(True)
        self.metrics.model_info.info({"version": version, "model": cfg.model, "alias": cfg.alias})
        self.metrics.load_seconds.set(state.load_seconds)
        self.metrics.model_ready.set(1)
        log.info("model loaded", extra={"model_version": version, "previous_version": current,
                                        "load_seconds": round(state.load_seconds, 3)})  # fmt: skip

    def _note_missing(self, reason: str) -> None:
        if self.state is None and reason != self.not_ready_reason:
            log.warning("waiting for a model", extra={"reason": reason})
            self.not_ready_reason = reason

    async def _watch(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:  # the watcher must survive anything: serving goes on
                log.exception("model watcher error", extra={"model_version": self.state and self.state.version})
            await asyncio.sleep(self.config.poll_seconds)

    # -- ASGI -------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._watcher = asyncio.create_task(self._watch())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._watcher:
                    self._watcher.cancel()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        t0 = time.perf_counter()
        path: str = scope["path"]
        method: str = scope["method"]
        route = "unmatched"
        headers = _JSON
        try:
            if path.startswith(_BOOKS) and path.endswith(_ALSO):
                route = "/v1/books/{book_id}/also-bought"
                status, body = self._also_bought(method, path[len(_BOOKS) : -len(_ALSO)], scope["query_string"])
            else:
                route = _route_of(path)
                status, body, headers = await self._other(scope, receive, method, path)
        except HttpError as err:
            status, body = err.status, orjson.dumps({"error": err.message})
        except Exception:
            log.exception("unhandled error", extra={"route": route, "model_version": self.state and self.state.version})
            status, body = 500, b'{"error":"internal error"}'
        await send({"type": "http.response.start", "status": status,
                    "headers": [*headers, (b"content-length", str(len(body)).encode())]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})
        elapsed = time.perf_counter() - t0
        self.metrics.observe(route, method, status, elapsed)
        if self.config.access_log:
            log.info("request", extra={"method": method, "path": path, "status": status, "route": route,
                                       "ms": round(elapsed * 1000, 3),
                                       "model_version": self.state and self.state.version})  # fmt: skip

    def _model(self) -> ModelState:
        if self.state is None:
            raise HttpError(503, f"not ready: {self.not_ready_reason}")
        return self.state

    def _also_bought(self, method: str, book_id: str, qs: bytes) -> tuple[int, bytes]:
        if method != "GET":
            raise HttpError(405, "use GET")
        k = _k_from_query(qs)
        body = self._model().also_bought_body(book_id, k)
        if body is None:
            raise HttpError(404, f"unknown book_id {book_id!r}")
        return 200, body

    async def _read_json(self, scope: Scope, receive: Receive) -> object:
        limit = self.config.max_body_bytes
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                raise HttpError(413, f"request body over {limit} bytes")
        chunks, size = [], 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise HttpError(413, f"request body over {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        try:
            return orjson.loads(b"".join(chunks))
        except orjson.JSONDecodeError as err:
            raise HttpError(400, f"malformed JSON: {err}") from None

    async def _other(
        self, scope: Scope, receive: Receive, method: str, path: str
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        if path in (LIVE_PATH, "/v2/health/live"):
            return 200, b'{"status":"alive"}', _JSON
        if path in (READY_PATH, "/v2/health/ready"):
            if self.state is None:
                return 503, orjson.dumps({"ready": False, "reason": self.not_ready_reason}), _JSON
            return 200, orjson.dumps({"ready": True, "model_version": self.state.version}), _JSON
        if path == METRICS_PATH:
            return 200, generate_latest(self.metrics.registry), [(b"content-type", CONTENT_TYPE_LATEST.encode())]
        if path == "/openapi.json":
            return 200, self._openapi, _JSON
        if path == "/v1/recommendations":
            if method != "POST":
                raise HttpError(405, "use POST")
            doc = await self._read_json(scope, receive)
            books, k = _basket(doc, "body")
            return 200, orjson.dumps(self._model().recommend(books, k)), _JSON
        if path.startswith(_MODELS):
            return await self._kserve(scope, receive, method, path[len(_MODELS) :])
        raise HttpError(404, f"no route {path}")

    async def _kserve(
        self, scope: Scope, receive: Receive, method: str, rest: str
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        if rest.endswith(_PREDICT):
            if rest[: -len(_PREDICT)] != self.config.model:
                raise HttpError(404, f"unknown model {rest[: -len(_PREDICT)]!r}")
            if method != "POST":
                raise HttpError(405, "use POST")
            doc = await self._read_json(scope, receive)
            instances = doc.get("instances") if isinstance(doc, dict) else None
            if not isinstance(instances, list):
                raise HttpError(422, "body must be an object with an 'instances' list")
            if len(instances) > MAX_BASKET:
                raise HttpError(422, f"at most {MAX_BASKET} instances")
            parsed = [_basket(inst, f"instances[{i}]") for i, inst in enumerate(instances)]
            model = self._model()
            return 200, orjson.dumps({"predictions": [model.recommend(b, k) for b, k in parsed]}), _JSON
        if rest != self.config.model:
            raise HttpError(404, f"unknown model {rest!r}")
        if method != "GET":
            raise HttpError(405, "use GET")
        state = self.state
        doc = {"name": rest, "ready": state is not None, "version": state.version if state else None}
        return 200, orjson.dumps(doc), _JSON


def run(config: ServerConfig) -> None:
    """Serve until stopped (SIGTERM/SIGINT shut down gracefully)."""
    import uvicorn

    configure_logging()
    app = App(config)
    log.info("starting", extra={"host": config.host, "port": config.port, "model": config.model,
                                "alias": config.alias, "registry": str(config.registry)})  # fmt: skip
    uvicorn.run(app, host=config.host, port=config.port, loop="uvloop", http="httptools", lifespan="on",
                log_config=None, access_log=False, server_header=False, date_header=False)  # fmt: skip
