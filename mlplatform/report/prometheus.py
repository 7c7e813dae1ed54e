"""A small, read-only client for Prometheus' HTTP API (``/api/v1/query``), standard library only.

Every failure becomes one ``PrometheusError`` whose message is a single line a person can act
on: Prometheus not answering, answering with something else than its API, or refusing the query.
The JSON shape is the documented one: ``{"status": "success"|"error", "data": {"resultType":
"vector", "result": [{"metric": {...}, "value": [<unix time>, "<value>"]}]}, "errorType",
"error", "warnings"}``, with values as strings ("NaN", "+Inf" and "-Inf" included).
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Prometheus", "PrometheusError", "Sample", "check_url"]


class PrometheusError(Exception):
    """Prometheus could not answer a query; the message is one line."""


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float  # may be NaN or +/-Inf: Prometheus returns what the expression computes

    @property
    def finite(self) -> bool:
        return math.isfinite(self.value)


def check_url(url: str) -> str:
    """``url`` without a trailing slash, if it is an http(s) URL with a host; ValueError otherwise."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"{url!r} is not an http(s) URL such as http://localhost:9090")
    if parsed.query or parsed.fragment:
        raise ValueError(f"{url!r} has a query or fragment: give the Prometheus base URL, e.g. http://localhost:9090")
    try:
        parsed.port  # noqa: B018  # raises on a port that is not a number
    except ValueError as err:
        raise ValueError(f"{url!r} has an invalid port: {err}") from err
    return url.rstrip("/")


@dataclass
class Prometheus:
    """Instant queries against the Prometheus at ``url`` (e.g. a port-forward to http://localhost:9090)."""

    url: str
    timeout_seconds: float = 30.0
    warnings: list[str] = field(default_factory=list)  # what Prometheus warned about, across queries

    def __post_init__(self) -> None:
        self.url = check_url(self.url)

    def query(self, expr: str, *, at: float) -> list[Sample]:
        """The instant vector ``expr`` evaluates to at unix time ``at``."""
        params = urllib.parse.urlencode({"query": expr, "time": f"{at:.3f}"})
        body = self._get(f"{self.url}/api/v1/query?{params}")
        data = self._data(body)
        if data.get("resultType") != "vector":
            raise PrometheusError(f"Prometheus at {self.url} answered a {data.get('resultType')!r}, not a vector")
        try:
            return [Sample(dict(r["metric"]), float(r["value"][1])) for r in data["result"]]
        except (KeyError, IndexError, TypeError, ValueError) as err:
            raise PrometheusError(f"Prometheus at {self.url} answered a vector this client cannot read: {err}") from err

    def _get(self, url: str) -> tuple[int, bytes]:
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        try:
            with urllib.request.urlopen(
                request, timeout=self.timeout_seconds
            ) as response:  # the scheme is checked: http(s) only
                return response.status, response.read()
        except urllib.error.HTTPError as err:  # 4xx/5xx: the API puts its reason in a JSON body
            with err:
                return err.code, err.read()
        except TimeoutError as err:
            raise PrometheusError(self._unreachable(f"no answer within {self.timeout_seconds:g}s")) from err
        except urllib.error.URLError as err:
            reason = err.reason
            if isinstance(reason, TimeoutError):
                raise PrometheusError(self._unreachable(f"no answer within {self.timeout_seconds:g}s")) from err
            text = reason.strerror if isinstance(reason, OSError) and reason.strerror else str(reason)
            raise PrometheusError(self._unreachable(text)) from err
        except (OSError, ValueError) as err:  # connection reset mid-answer, a malformed URL
            raise PrometheusError(self._unreachable(str(err) or type(err).__name__)) from err

    def _unreachable(self, why: str) -> str:
        return (
            f"cannot reach Prometheus at {self.url}: {why} (is it running? e.g. `kubectl -n monitoring "
            "port-forward svc/kube-prometheus-stack-prometheus 9090:9090`, then --prometheus http://localhost:9090)"
        )

    def _data(self, answer: tuple[int, bytes]) -> dict[str, Any]:
        status, body = answer
        try:
            parsed = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            parsed = None
        if not isinstance(parsed, dict) or parsed.get("status") not in ("success", "error"):
            raise PrometheusError(
                f"{self.url} answered HTTP {status} with something that is not Prometheus' API JSON "
                "(is this the Prometheus URL, not Grafana's or a proxy's?)"
            )
        if parsed["status"] == "error":
            error = " ".join(str(parsed.get("error", "no reason given")).split())
            raise PrometheusError(f"Prometheus refused the query (HTTP {status}, {parsed.get('errorType')}): {error}")
        self.warnings.extend(str(w) for w in parsed.get("warnings") or ())
        data = parsed.get("data")
        if not isinstance(data, dict):
            raise PrometheusError(f"Prometheus at {self.url} answered success without data")
        return data
