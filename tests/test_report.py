"""The GPU cost report against recorded Prometheus API answers, served over real sockets on 127.0.0.1.

tests/fixtures/prometheus-api/ holds the answers (their README says what each stands for). A
small HTTP server plays Prometheus: it answers each query with the fixture for the series the
query reads, or answers 500, or never answers; a bound socket that does not listen plays a
Prometheus that is down.
"""

from __future__ import annotations

import csv
import io
import os
import socket
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mlplatform.monitoring import gpu_usage as u
from mlplatform.report import Prometheus, PrometheusError
from mlplatform.report.cli import main

ROOT = Path(__file__).resolve().parents[1]
API = ROOT / "tests" / "fixtures" / "prometheus-api"
NOW = 1765065600.0  # 2025-12-07 00:00 UTC
COVERAGE = "count_over_time"
RECORDED = {
    u.ALLOCATED: "gpu-hours-allocated.json",
    u.BUSY: "gpu-hours-busy.json",
    u.IDLE: "gpu-hours-idle.json",
    COVERAGE: "coverage-full.json",
}
Answer = tuple[int, str]  # HTTP status, fixture file name (or a raw body)


class FakePrometheus:
    """Answers /api/v1/query from fixtures, picked by the series each query reads."""

    def __init__(self, answers: Mapping[str, Answer], *, hang: bool = False) -> None:
        self.answers, self.hang = dict(answers), hang
        self.queries: list[tuple[str, dict[str, list[str]]]] = []
        self.release = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                params = urllib.parse.parse_qs(url.query)
                fake.queries.append((url.path, params))
                if fake.hang:
                    fake.release.wait(10)
                    return
                query = params["query"][0]
                # The coverage query also names the allocated record: match it first.
                key = COVERAGE if COVERAGE in query else next(k for k in fake.answers if k in query)
                status, answer = fake.answers[key]
                body = (API / answer).read_bytes() if answer.endswith(".json") else answer.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json" if answer.endswith(".json") else "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


Serve = Callable[..., FakePrometheus]


@pytest.fixture
def serve() -> Iterator[Serve]:
    started: list[FakePrometheus] = []

    def start(answers: Mapping[str, Answer] | None = None, **changes: Answer) -> FakePrometheus:
        fake = FakePrometheus({**{k: (200, v) for k, v in RECORDED.items()}, **(answers or {}), **changes})
        started.append(fake)
        return fake

    yield start
    for fake in started:
        fake.close()


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A port on 127.0.0.1 that is bound but not listening: connecting is refused at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def run(url: str, *extra: str) -> list[str]:
    return ["gpu-usage", "--prometheus", url, "--since", "7d", "--price-per-gpu-hour", "2.50", *extra]


TABLE = """\
GPU usage per team from 2025-11-30 00:00 UTC to 2025-12-07 00:00 UTC (168 h), at 2.50 per GPU-hour

team          allocated GPU-h  busy GPU-h  idle GPU-h  allocated cost  busy cost  idle cost
bookstore-ml           120.50       80.25       40.25          301.25     200.63     100.63
research                 0.00        0.00        0.00            0.00       0.00       0.00
vision                  36.00        6.00       30.00           90.00      15.00      75.00
total                  156.50       86.25       70.25          391.25     215.63     175.63
"""


def test_the_table_for_recorded_answers(serve: Serve, capsys: pytest.CaptureFixture[str]) -> None:
    fake = serve()
    assert main(run(fake.url), now=NOW) == 0
    out, err = capsys.readouterr()
    assert out == TABLE
    assert err == ""  # 7 days of records: nothing to warn about
    # Instant queries at the window's end, over exactly the window, on the recorded series.
    paths = {path for path, _ in fake.queries}
    assert paths == {"/api/v1/query"}
    asked = {params["query"][0] for _, params in fake.queries}
    assert asked == {u.gpu_hours(r, "604800s") for r in u.RECORDS} | {f"max(count_over_time({u.ALLOCATED}[604800s]))"}
    assert {params["time"][0] for _, params in fake.queries} == {f"{NOW:.3f}"}


def test_the_table_for_answers_recorded_from_a_real_prometheus(
    serve: Serve, capsys: pytest.CaptureFixture[str]
) -> None:
    columns = ("allocated", "busy", "idle")
    recorded = {r: (200, f"recorded-gpu-hours-{c}.json") for r, c in zip(u.RECORDS, columns, strict=True)}
    recorded[COVERAGE] = (200, "recorded-coverage.json")
    argv = ["gpu-usage", "--prometheus", serve(recorded).url, "--since", "3h", "--price-per-gpu-hour", "2.5"]
    assert main(argv, now=1796588820) == 0
    out, err = capsys.readouterr()
    assert (
        out.splitlines()[0]
        == "GPU usage per team from 2026-12-06 17:27 UTC to 2026-12-06 20:27 UTC (3 h), at 2.5 per GPU-hour"
    )
    assert [line.split() for line in out.splitlines()[3:]] == [
        ["bookstore-ml", "6.00", "3.00", "3.00", "15.00", "7.50", "7.50"],
        ["vision", "1.00", "0.00", "1.00", "2.50", "0.00", "2.50"],
        ["total", "7.00", "3.00", "4.00", "17.50", "7.50", "10.00"],
    ]
    assert err == ""  # 180 one-minute records: the whole 3 hours


def test_csv_has_a_row_per_team_with_hours_and_cost(serve: Serve, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(run(serve().url, "--format", "csv"), now=NOW) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["team"] for r in rows] == ["bookstore-ml", "research", "vision"]
    book = rows[0]
    assert (book["allocated_gpu_hours"], book["busy_gpu_hours"], book["idle_gpu_hours"]) == (
        "120.5000",
        "80.2500",
        "40.2500",
    )
    assert (book["allocated_cost"], book["busy_cost"], book["idle_cost"]) == ("301.25", "200.63", "100.63")
    assert book["price_per_gpu_hour"] == "2.50"
    assert (book["window_start"], book["window_end"]) == ("2025-11-30T00:00:00+00:00", "2025-12-07T00:00:00+00:00")
    # Money adds up in the spreadsheet too: cost = hours x price, to the cent.
    for row in rows:
        for column in ("allocated", "busy", "idle"):
            hours = Decimal(row[f"{column}_gpu_hours"])
            assert Decimal(row[f"{column}_cost"]) == (hours * Decimal("2.50")).quantize(
                Decimal("0.01"), "ROUND_HALF_UP"
            )


def test_no_series_is_an_empty_report_that_says_why(serve: Serve, capsys: pytest.CaptureFixture[str]) -> None:
    empty = {key: (200, "recorded-empty.json") for key in RECORDED}
    assert main(run(serve(empty).url), now=NOW) == 0
    out, err = capsys.readouterr()
    assert "(no team held GPUs in this window)" in out
    assert out.splitlines()[-2].split() == ["total", "0.00", "0.00", "0.00", "0.00", "0.00", "0.00"]
    assert "Prometheus holds 0.0 h of GPU records in the 168.0 h asked for" in err


def test_nan_and_inf_are_shown_as_not_available_and_left_out_of_totals(
    serve: Serve, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(run(serve(**{u.BUSY: (200, "gpu-hours-busy-nan-inf.json")}).url), now=NOW) == 0
    out, err = capsys.readouterr()
    rows = {line.split()[0]: line.split() for line in out.splitlines()[3:]}
    assert rows["vision"][2] == "n/a" and rows["vision"][5] == "n/a"
    assert rows["research"][2] == "n/a" and rows["research"][5] == "n/a"
    assert rows["total"][2] == "80.25" and rows["total"][5] == "200.63"  # bookstore-ml's alone
    assert "warning: Prometheus returned nan busy GPU-hours for team 'vision': n/a" in err
    assert "warning: Prometheus returned inf busy GPU-hours for team 'research': n/a" in err
    csv_out = main(run(serve(**{u.BUSY: (200, "gpu-hours-busy-nan-inf.json")}).url, "--format", "csv"), now=NOW)
    assert csv_out == 0
    vision = next(r for r in csv.DictReader(io.StringIO(capsys.readouterr().out)) if r["team"] == "vision")
    assert vision["busy_gpu_hours"] == "" and vision["busy_cost"] == ""


def test_a_window_longer_than_the_data_is_reported(serve: Serve, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(run(serve(**{COVERAGE: (200, "coverage-26h.json")}).url), now=NOW) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Prometheus holds 26.0 h of GPU records in the 168.0 h asked for" in err


def test_prometheus_warnings_are_passed_on(serve: Serve, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(run(serve(**{COVERAGE: (200, "warnings.json")}).url), now=NOW) == 0
    assert "warning: Prometheus warned: PromQL info: metric might not be a counter" in capsys.readouterr().err


# -- the query layer ---------------------------------------------------------------------------


def test_query_reads_labels_and_values(serve: Serve) -> None:
    samples = Prometheus(serve().url).query(u.gpu_hours(u.BUSY, "7d"), at=NOW)
    assert {s.labels["team"]: s.value for s in samples} == {"bookstore-ml": 80.25, "research": 0.0, "vision": 6.0}
    nan_inf = Prometheus(serve(**{u.BUSY: (200, "gpu-hours-busy-nan-inf.json")}).url).query(u.BUSY, at=NOW)
    values = {s.labels["team"]: s for s in nan_inf}
    assert values["research"].value == float("inf") and not values["research"].finite
    assert values["vision"].value != values["vision"].value  # NaN
    assert Prometheus(serve(**{u.BUSY: (200, "recorded-empty.json")}).url).query(u.BUSY, at=NOW) == []


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (
            (400, "recorded-error-bad-data.json"),
            'Prometheus refused the query (HTTP 400, bad_data): invalid parameter "query": 1:38: parse error: '
            "unexpected character after '!' inside braces: '}'",
        ),
        ((503, "error-timeout.json"), "Prometheus refused the query (HTTP 503, timeout): query timed out"),
        ((500, "<html><body>Internal Server Error</body></html>"), "answered HTTP 500 with something that is not"),
        ((200, "<html>Grafana</html>"), "(is this the Prometheus URL, not Grafana's or a proxy's?)"),
        ((200, "matrix.json"), "answered a 'matrix', not a vector"),
    ],
)
def test_errors_become_one_line(serve: Serve, answer: Answer, message: str) -> None:
    with pytest.raises(PrometheusError) as caught:
        Prometheus(serve(**{u.BUSY: answer}).url).query(u.BUSY, at=NOW)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_prometheus_that_never_answers_times_out(serve: Serve) -> None:
    fake = serve()
    fake.hang = True
    with pytest.raises(PrometheusError, match=r"cannot reach Prometheus at .*: no answer within 0.3s"):
        Prometheus(fake.url, timeout_seconds=0.3).query(u.BUSY, at=NOW)


def test_a_prometheus_that_is_down_is_refused(refused_url: str) -> None:
    with pytest.raises(
        PrometheusError, match=r"cannot reach Prometheus at http://127\.0\.0\.1:\d+: Connection refused"
    ):
        Prometheus(refused_url).query(u.BUSY, at=NOW)


# -- the command, as a person runs it --------------------------------------------------------


def command(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "mlplatform.report", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_the_command_prints_the_table(serve: Serve) -> None:
    done = command(*run(serve().url))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("GPU usage per team from ") and lines[0].endswith("(168 h), at 2.50 per GPU-hour")
    assert lines[2:] == TABLE.splitlines()[2:]  # the window ends now, not at NOW: only the title differs


def test_an_unreachable_prometheus_is_one_line_and_exit_1(refused_url: str, serve: Serve) -> None:
    done = command(*run(refused_url))
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: cannot reach Prometheus at")
    hung = serve()
    hung.hang = True
    done = command(*run(hung.url, "--timeout", "0.5"))
    assert done.returncode == 1 and "no answer within 0.5s" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("--since", "a week"), "argument --since: 'a week' is not a duration such as 7d"),
        (("--since", "0m"), "argument --since: '0m' is out of range: from 1m to 400d"),
        (("--since", "500d"), "out of range"),
        (("--price-per-gpu-hour", "-1"), "argument --price-per-gpu-hour: '-1' must be a price >= 0"),
        (("--price-per-gpu-hour", "two"), "'two' is not a number such as 2.50"),
        (("--price-per-gpu-hour", "NaN"), "'NaN' must be a price >= 0"),
        (("--prometheus", "localhost:9090"), "'localhost:9090' is not an http(s) URL"),
        (("--prometheus", "http://"), "'http://' is not an http(s) URL"),
        (("--prometheus", "http://localhost:90x0"), "has an invalid port"),
        (("--format", "xlsx"), "argument --format: invalid choice: 'xlsx'"),
        (("--timeout", "0"), "'0' must be between 0 and 600 seconds"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    change: tuple[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    options = {"--prometheus": "http://localhost:9090", "--since": "7d", "--price-per-gpu-hour": "2.50"}
    options[change[0]] = change[1]
    argv = ["gpu-usage", *(item for pair in options.items() for item in pair)]
    with pytest.raises(SystemExit) as exited:
        main(argv, now=NOW)
    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert message in err and err.count("\n") == 1, err


def test_bad_input_from_the_shell() -> None:
    done = command("gpu-usage", "--prometheus", "http://localhost:9090", "--since", "soon", "--price-per-gpu-hour", "1")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "--since: 'soon' is not a duration" in done.stderr
    assert "Traceback" not in done.stderr
