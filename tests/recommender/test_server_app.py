"""The ASGI app in-process (httpx ASGITransport): routing, error contract, hot swap."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recommender.registry import Registry
from recommender.server import App, ServerConfig
from tests.recommender.test_registry import make_artifact


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, small_artifact: Path) -> Iterator[tuple[Path, str]]:
    root = tmp_path_factory.mktemp("registry")
    version, _ = Registry(root).register("bookstore", small_artifact)
    Registry(root).promote("bookstore", version)
    yield root, version


def _app(root: Path, **kw: Any) -> App:
    return App(ServerConfig(registry=root, model="bookstore", **kw))


def _request(app: App, method: str, url: str, **kw: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.request(method, url, **kw)

    return asyncio.run(go())


@pytest.fixture(scope="module")
def ready_app(registry: tuple[Path, str]) -> App:
    app = _app(registry[0], max_body_bytes=4096)
    asyncio.run(app.refresh())
    return app


def test_not_ready_without_a_model(tmp_path: Path) -> None:
    app = _app(tmp_path)
    asyncio.run(app.refresh())
    assert _request(app, "GET", "/live").status_code == 200
    r = _request(app, "GET", "/ready")
    assert r.status_code == 503 and "not found" in r.json()["reason"]
    assert _request(app, "GET", "/v2/health/ready").status_code == 503
    assert _request(app, "GET", "/v1/books/b000001/also-bought").status_code == 503


def test_lookup_and_kserve(ready_app: App, registry: tuple[Path, str]) -> None:
    version = registry[1]
    r = _request(ready_app, "GET", "/ready")
    assert r.status_code == 200 and r.json()["model_version"] == version
    r = _request(ready_app, "GET", "/v1/books/b000001/also-bought")
    body = r.json()
    assert r.status_code == 200 and body["model_version"] == version
    assert len(body["recommendations"]) == 10
    assert all(rec["book_id"] != "b000001" for rec in body["recommendations"])
    r5 = _request(ready_app, "GET", "/v1/books/b000001/also-bought?k=5").json()
    assert r5["recommendations"] == body["recommendations"][:5]
    r = _request(ready_app, "POST", "/v1/recommendations", json={"books": ["b000001", "b000002", "nope"], "k": 7})
    recs = r.json()
    assert r.status_code == 200 and len(recs["recommendations"]) == 7 and recs["unknown_books"] == ["nope"]
    assert not {"b000001", "b000002"} & {x["book_id"] for x in recs["recommendations"]}
    r = _request(ready_app, "GET", "/v1/models/bookstore")
    assert r.json() == {"name": "bookstore", "ready": True, "version": version}
    r = _request(ready_app, "POST", "/v1/models/bookstore:predict",
                 json={"instances": [["b000001"], {"books": ["b000002"], "k": 2}]})  # fmt: skip
    preds = r.json()["predictions"]
    assert len(preds) == 2 and len(preds[1]["recommendations"]) == 2
    assert _request(ready_app, "GET", "/v2/health/live").status_code == 200


@pytest.mark.parametrize(
    ("method", "url", "kw", "status"),
    [
        ("GET", "/v1/books/unknown/also-bought", {}, 404),
        ("GET", "/v1/books/b000001/also-bought?k=0", {}, 422),
        ("GET", "/v1/books/b000001/also-bought?k=abc", {}, 422),
        ("GET", "/v1/books/b000001/also-bought?k=101", {}, 422),
        ("POST", "/v1/books/b000001/also-bought", {}, 405),
        ("POST", "/v1/recommendations", {"content": b"{not json"}, 400),
        ("POST", "/v1/recommendations", {"content": b""}, 400),
        ("POST", "/v1/recommendations", {"json": {"books": "b1"}}, 422),
        ("POST", "/v1/recommendations", {"json": {"books": [1, 2]}}, 422),
        ("POST", "/v1/recommendations", {"json": {"books": [], "k": True}}, 422),
        ("POST", "/v1/recommendations", {"json": 5}, 422),
        ("POST", "/v1/recommendations", {"content": b"[" + b'"x",' * 2000 + b'"x"]'}, 413),
        ("GET", "/v1/recommendations", {}, 405),
        ("POST", "/v1/models/other:predict", {"json": {"instances": []}}, 404),
        ("POST", "/v1/models/bookstore:predict", {"json": {"instances": 3}}, 422),
        ("GET", "/v1/models/other", {}, 404),
        ("GET", "/nope", {}, 404),
    ],
)
def test_error_contract(ready_app: App, method: str, url: str, kw: dict[str, Any], status: int) -> None:
    r = _request(ready_app, method, url, **kw)
    assert r.status_code == status
    assert isinstance(r.json()["error"], str) and r.json()["error"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["books", "k", "x"]), inner,
                                                                max_size=3),
    max_leaves=10,
))  # fmt: skip
def test_no_body_makes_a_5xx(ready_app: App, body: object) -> None:
    for url in ("/v1/recommendations", "/v1/models/bookstore:predict"):
        r = _request(ready_app, "POST", url, content=json.dumps(body).encode())
        assert r.status_code in (200, 400, 413, 422), r.text


@settings(max_examples=60, deadline=None)
@given(k=st.text(max_size=6), book=st.text(min_size=1, max_size=10))
def test_no_query_makes_a_5xx(ready_app: App, k: str, book: str) -> None:
    r = _request(ready_app, "GET", f"/v1/books/{quote(book, safe='')}/also-bought", params={"k": k})
    assert r.status_code in (200, 404, 422)


def test_metrics_by_route_and_status(ready_app: App) -> None:
    _request(ready_app, "GET", "/v1/books/unknown/also-bought")
    text = _request(ready_app, "GET", "/metrics").text
    assert 'recommender_requests_total{method="GET",route="/v1/books/{book_id}/also-bought",status="404"}' in text
    assert "recommender_request_duration_seconds_bucket" in text
    assert "recommender_model_info{" in text and "recommender_model_load_seconds" in text
    assert 'recommender_model_reloads_total{result="success"} 1.0' in text


def test_hot_swap_and_refusal(tmp_path: Path, registry: tuple[Path, str]) -> None:
    root = tmp_path / "reg"
    shutil.copytree(registry[0], root)
    reg = Registry(root)
    app = _app(root)
    asyncio.run(app.refresh())
    assert app.state is not None and app.state.version == registry[1]
    # A corrupt new version is refused; the old one keeps serving.
    bad_art = tmp_path / "bad"
    make_artifact(bad_art, 11)
    bad, _ = reg.register("bookstore", bad_art)
    reg.promote("bookstore", bad)
    (reg.version_dir("bookstore", bad) / "model.npz").write_bytes(b"truncated")
    asyncio.run(app.refresh())
    assert app.state.version == registry[1]
    assert _request(app, "GET", "/ready").status_code == 200
    assert "recommender_model_last_reload_success 0.0" in _request(app, "GET", "/metrics").text
    # A good new version is swapped in.
    good_art = tmp_path / "good"
    make_artifact(good_art, 12)
    good, _ = reg.register("bookstore", good_art)
    reg.promote("bookstore", good)
    asyncio.run(app.refresh())
    assert app.state.version == good
    assert _request(app, "GET", "/v1/books/b1/also-bought?k=2").json()["model_version"] == good


def test_openapi_document_lists_routes(ready_app: App) -> None:
    doc = _request(ready_app, "GET", "/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert {"/v1/books/{book_id}/also-bought", "/v1/recommendations", "/v1/models/{name}:predict"} <= set(doc["paths"])
