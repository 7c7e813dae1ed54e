"""GPU-hours per team (allocated, busy, idle) and what they cost, from the platform's recorded series.

The figures are the GPU dashboard's: sums of the per-minute records ``team:gpus_*:sum``
(mlplatform/monitoring/gpu_usage.py) over the window, so minutes Prometheus holds no data for
(before monitoring was on, past its retention) count as nothing, and the report says how many
hours of the window it actually saw.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

from ..monitoring.gpu_usage import ALLOCATED, BUSY, IDLE, RECORD_INTERVAL_SECONDS, gpu_hours
from .prometheus import Prometheus

__all__ = ["TeamHours", "UsageReport", "collect", "csv_text", "table_text"]

_CENT = Decimal("0.01")
COLUMNS = ("allocated", "busy", "idle")
CSV_HEADER = (
    "team", "window_start", "window_end", "allocated_gpu_hours", "busy_gpu_hours", "idle_gpu_hours",
    "price_per_gpu_hour", "allocated_cost", "busy_cost", "idle_cost",
)  # fmt: skip


@dataclass(frozen=True)
class TeamHours:
    team: str
    allocated: float | None  # None: Prometheus had no finite figure (NaN, +Inf) for it
    busy: float | None
    idle: float | None

    def hours(self, column: str) -> float | None:
        value: float | None = getattr(self, column)
        return value


@dataclass(frozen=True)
class UsageReport:
    window_seconds: int
    end: float  # unix time the window ends at
    price_per_gpu_hour: Decimal
    teams: tuple[TeamHours, ...]
    covered_hours: float  # hours of the window Prometheus holds GPU records for
    warnings: tuple[str, ...]

    @property
    def window_hours(self) -> float:
        return self.window_seconds / 3600

    def cost(self, hours: float | None) -> Decimal | None:
        if hours is None:
            return None
        return (Decimal(repr(hours)) * self.price_per_gpu_hour).quantize(_CENT, rounding=ROUND_HALF_UP)

    def total(self, column: str) -> float:
        return math.fsum(h for t in self.teams if (h := t.hours(column)) is not None)


def collect(prometheus: Prometheus, *, window_seconds: int, end: float, price_per_gpu_hour: Decimal) -> UsageReport:
    """Query the three GPU-hour figures per team, and how much of the window has data."""
    window = f"{window_seconds}s"
    figures: dict[str, dict[str, float | None]] = {}
    warnings: list[str] = []
    for column, record in zip(COLUMNS, (ALLOCATED, BUSY, IDLE), strict=True):
        for sample in prometheus.query(gpu_hours(record, window), at=end):
            team = sample.labels.get("team", "")
            if not sample.finite:
                warnings.append(f"Prometheus returned {sample.value} {column} GPU-hours for team {team!r}: n/a")
            figures.setdefault(team, {})[column] = sample.value if sample.finite else None
    teams = tuple(
        TeamHours(team, values.get("allocated", 0.0), values.get("busy", 0.0), values.get("idle", 0.0))
        for team, values in sorted(figures.items())
    )
    samples = prometheus.query(f"max(count_over_time({ALLOCATED}[{window}]))", at=end)
    covered = max((s.value for s in samples if s.finite), default=0.0) * RECORD_INTERVAL_SECONDS / 3600
    window_hours = window_seconds / 3600
    if covered < window_hours * 0.99:
        warnings.append(
            f"Prometheus holds {covered:.1f} h of GPU records in the {window_hours:.1f} h asked for (monitoring "
            "turned on later, or its retention is shorter): the figures cover those hours only"
        )
    warnings.extend(f"Prometheus warned: {w}" for w in prometheus.warnings)
    return UsageReport(window_seconds, end, price_per_gpu_hour, teams, covered, tuple(warnings))


def _cell(value: float | Decimal | None) -> str:
    """Hours or money to two decimals; n/a where Prometheus gave no number."""
    return "n/a" if value is None else f"{value:.2f}"


def _when(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%d %H:%M UTC")


def table_text(report: UsageReport) -> str:
    """A fixed-width table, one row per team and a total."""
    head = ("team", "allocated GPU-h", "busy GPU-h", "idle GPU-h", "allocated cost", "busy cost", "idle cost")
    rows = [
        (t.team, *(_cell(t.hours(c)) for c in COLUMNS), *(_cell(report.cost(t.hours(c))) for c in COLUMNS))
        for t in report.teams
    ]
    totals = [report.total(c) for c in COLUMNS]
    rows.append(("total", *(_cell(h) for h in totals), *(_cell(report.cost(h)) for h in totals)))
    widths = [max(len(row[i]) for row in (head, *rows)) for i in range(len(head))]
    lines = [
        f"GPU usage per team from {_when(report.end - report.window_seconds)} to {_when(report.end)} "
        f"({report.window_hours:g} h), at {report.price_per_gpu_hour} per GPU-hour",
        "",
    ]
    for row in (head, *rows):
        cells = [row[0].ljust(widths[0]), *(cell.rjust(w) for cell, w in zip(row[1:], widths[1:], strict=True))]
        lines.append("  ".join(cells).rstrip())
    if not report.teams:
        lines.append("(no team held GPUs in this window)")
    return "\n".join(lines) + "\n"


def csv_text(report: UsageReport) -> str:
    """One row per team (no total: a spreadsheet sums), empty cells where Prometheus had no finite figure."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    start, end = (datetime.fromtimestamp(t, UTC).isoformat() for t in (report.end - report.window_seconds, report.end))
    for t in report.teams:
        hours = [t.hours(c) for c in COLUMNS]
        costs = [report.cost(h) for h in hours]
        cells = ["" if v is None else f"{v:.4f}" if isinstance(v, float) else f"{v}" for v in (*hours, *costs)]
        writer.writerow([t.team, start, end, *cells[:3], f"{report.price_per_gpu_hour}", *cells[3:]])
    return out.getvalue()
