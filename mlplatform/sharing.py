"""How teams share what Kueue may admit: guaranteed shares, borrowing and lending, and the most a team can hold.

Pure arithmetic over the stack configuration (no Pulumi, no Kubernetes objects): ``config.py``
parses each entry of ``ml-platform:teams`` with ``parse_team_entry`` and resolves every team's
share with ``resolve_shares``; ``kueue.py`` turns the result into one ClusterQueue per team in one
cohort, plus a Cohort holding the part of the pool nobody is guaranteed.

A team entry is ``<name>`` or ``<name> <setting>=<value> ...`` (spaces or commas between), e.g.
``search-ml gpus=1 cpu=4 memory=8Gi gpuBorrowingLimit=1 weight=2`` (``SETTINGS`` lists them all).

- **Guaranteed** (``cpu``, ``memory``, ``gpus``): the team's ClusterQueue nominal quota. It can
  always get this back, by preempting borrowers (``reclaimWithinCohort``). A team that states no
  guarantee for a resource gets an equal share of what the stated guarantees leave.
- **Borrowing limit**: at most this much above its guarantee; unset, whatever the others lend.
- **Lending limit**: at most this much of its unused guarantee goes to others; unset, all of it.
- **Weight**: borrowed capacity is divided in proportion to it (Kueue fair sharing).

The pool (``Pools``) is split exactly: the teams' guarantees plus the cohort's shared remainder
add up to it, so no quota ever promises more than the cluster has.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from .quantity import QuantityError, parse_quantity

__all__ = [
    "COHORT",
    "RESOURCES",
    "SETTINGS",
    "Pools",
    "Problem",
    "Share",
    "TeamConfig",
    "TeamEntry",
    "parse_team_entry",
    "quantity_text",
    "resolve_shares",
    "shared_remainder",
]

# The one cohort every team's ClusterQueue joins; a team may not take its name.
COHORT = "ml-teams"
# The resources teams share, by their setting names (GPUs are nvidia.com/gpu).
RESOURCES = ("cpu", "memory", "gpus")
_MEBIBYTE = Decimal(2**20)
_MILLI = Decimal("0.001")
# Whole units each resource is split in when a guarantee is not stated: GPUs are indivisible,
# CPU goes by millicores, memory by MiB (so the quotas read as quantities people recognise).
_SPLIT_UNIT = {"cpu": _MILLI, "memory": _MEBIBYTE, "gpus": Decimal(1)}

SETTINGS: dict[str, str] = {
    "cpu": "guaranteed CPU (a quantity: 4, 500m)",
    "memory": "guaranteed memory (a quantity: 16Gi)",
    "gpus": "guaranteed GPUs (a whole number)",
    "cpuBorrowingLimit": "CPU it may borrow above its guarantee",
    "memoryBorrowingLimit": "memory it may borrow above its guarantee",
    "gpuBorrowingLimit": "GPUs it may borrow above its guarantee",
    "cpuLendingLimit": "of its unused guaranteed CPU, the most it lends",
    "memoryLendingLimit": "of its unused guaranteed memory, the most it lends",
    "gpuLendingLimit": "of its unused guaranteed GPUs, the most it lends",
    "weight": "its fair-sharing weight (default 1)",
}
# setting -> (resource, Share field)
_FIELDS: dict[str, tuple[str, str]] = {
    **{r: (r, "guaranteed") for r in RESOURCES},
    **{
        f"{p}BorrowingLimit": (r, "borrowing_limit") for p, r in (("cpu", "cpu"), ("memory", "memory"), ("gpu", "gpus"))
    },
    **{f"{p}LendingLimit": (r, "lending_limit") for p, r in (("cpu", "cpu"), ("memory", "memory"), ("gpu", "gpus"))},
}
_SEPARATORS = re.compile(r"[\s,]+")

# (key, value, what is allowed): config.py reports it as "ml-platform:<key> = <value> is not allowed: ..."
Problem = tuple[str, Any, str]


@dataclass(frozen=True)
class Share:
    """One resource of one team, in base units (cores, bytes, GPUs)."""

    guaranteed: Decimal
    borrowing_limit: Decimal | None = None  # None: whatever the other teams lend
    lending_limit: Decimal | None = None  # None: lends all of its guarantee it is not using
    # Its guarantee plus the most it can borrow: Kueue never admits more for the team at once.
    most: Decimal = Decimal(0)
    # The namespace's ResourceQuota: never below ``most``, or Kueue would admit workloads whose
    # pods the quota then refuses.
    namespace_limit: Decimal = Decimal(0)


@dataclass(frozen=True)
class TeamConfig:
    """One ML namespace and its share of what Kueue admits (the defaults: the only team of the
    default stack, guaranteed the whole default pool)."""

    name: str
    cpu: Share = Share(Decimal(8), most=Decimal(8), namespace_limit=Decimal(8))
    memory: Share = Share(Decimal(16 * 2**30), most=Decimal(16 * 2**30), namespace_limit=Decimal(16 * 2**30))
    gpus: Share = Share(Decimal(2), most=Decimal(2), namespace_limit=Decimal(2))
    weight: Decimal = Decimal(1)  # fair sharing: borrowed capacity is divided in proportion

    def share(self, resource: str) -> Share:
        """The team's ``Share`` of ``resource`` (one of ``RESOURCES``)."""
        return {"cpu": self.cpu, "memory": self.memory, "gpus": self.gpus}[resource]


@dataclass(frozen=True)
class Pools:
    """What Kueue may admit across all teams, per resource, in base units."""

    cpu: Decimal
    memory: Decimal
    gpus: Decimal
    # Where each total comes from, in config keys, for error messages.
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    def of(self, resource: str) -> Decimal:
        return {"cpu": self.cpu, "memory": self.memory, "gpus": self.gpus}[resource]


@dataclass(frozen=True)
class TeamEntry:
    """A parsed ``ml-platform:teams`` entry: the name and the settings it states."""

    name: str
    settings: Mapping[str, Decimal] = field(default_factory=dict)
    text: str = ""  # the entry as written, for error messages


def quantity_text(resource: str, value: Decimal) -> str:
    """``value`` as the Kubernetes quantity people write: 8, 1500m, 16Gi, 2."""
    if resource == "memory":
        for suffix, size in (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
            if value and value % size == 0:
                return f"{int(value // size)}{suffix}"
        return str(int(value)) if value == value.to_integral_value() else format(value.normalize(), "f")
    if value == value.to_integral_value():
        return str(int(value))
    if resource == "cpu" and (value * 1000) == (value * 1000).to_integral_value():
        return f"{int(value * 1000)}m"
    return format(value.normalize(), "f")


def _value(setting: str, raw: str) -> tuple[Decimal | None, str | None]:
    """The setting's value, or why it is not one."""
    try:
        value = parse_quantity(raw)
    except QuantityError as err:
        return None, f"{setting}={raw}: {err}"
    if value < 0:
        return None, f"{setting}={raw}: must not be negative"
    if _FIELDS.get(setting, ("",))[0] == "gpus" and value != value.to_integral_value():
        return None, f"{setting}={raw}: GPUs come whole (0, 1, 2, ...)"
    if setting == "weight" and 0 < value <= Decimal("1e-9"):
        return None, f"{setting}={raw}: 0, or more than 1e-9 (Kueue's smallest weight)"
    return value, None


def parse_team_entry(text: str) -> tuple[TeamEntry, list[str]]:
    """Split ``<name> <setting>=<value> ...``; returns the entry and what is wrong with it
    (each an "allowed" clause naming the setting and its value)."""
    tokens = [t for t in _SEPARATORS.split(str(text).strip()) if t]
    name = tokens[0].rstrip(":") if tokens else ""
    problems: list[str] = []
    settings: dict[str, Decimal] = {}
    for token in tokens[1:]:
        setting, sep, raw = token.partition("=")
        if not sep or not setting or not raw:
            problems.append(f"{token!r} is not a setting=value pair (e.g. gpus=1); settings: {', '.join(SETTINGS)}")
            continue
        if setting not in SETTINGS:
            close = difflib.get_close_matches(setting, SETTINGS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.append(f"{setting!r} is not a team setting{hint} (settings: {', '.join(SETTINGS)})")
            continue
        if setting in settings:
            problems.append(f"{setting} is set twice")
            continue
        value, problem = _value(setting, raw)
        if problem:
            problems.append(problem)
        elif value is not None:
            settings[setting] = value
    return TeamEntry(name, settings, str(text)), problems


def _floor(value: Decimal, unit: Decimal) -> Decimal:
    return (value / unit).to_integral_value(rounding=ROUND_FLOOR) * unit


def shared_remainder(teams: Sequence[TeamConfig], pools: Pools) -> dict[str, Decimal]:
    """Per resource, the part of the pool no team is guaranteed: the Cohort's own quota,
    which any team may borrow."""
    return {r: pools.of(r) - sum((t.share(r).guaranteed for t in teams), Decimal(0)) for r in RESOURCES}


def _guarantees(entries: Sequence[TeamEntry], pools: Pools) -> tuple[dict[str, dict[str, Decimal]], list[Problem]]:
    """resource -> team -> guaranteed amount; unstated guarantees split what the stated ones leave."""
    out: dict[str, dict[str, Decimal]] = {}
    problems: list[Problem] = []
    for resource in RESOURCES:
        stated = {e.name: e.settings[resource] for e in entries if resource in e.settings}
        pool, total = pools.of(resource), sum(stated.values(), Decimal(0))
        if total > pool:
            listed = ", ".join(f"{name} {resource}={quantity_text(resource, v)}" for name, v in stated.items())
            source = pools.sources.get(resource, "the pool")
            problems.append(
                (
                    "teams",
                    [e.text for e in entries],
                    f"the teams' guaranteed {resource} add up to {quantity_text(resource, total)} ({listed}), more "
                    f"than the {quantity_text(resource, pool)} the pool has ({source}): lower them or grow the pool",
                )
            )
        unstated = [e.name for e in entries if resource not in e.settings]
        each = _floor(max(pool - total, Decimal(0)) / len(unstated), _SPLIT_UNIT[resource]) if unstated else Decimal(0)
        out[resource] = {e.name: stated.get(e.name, each) for e in entries}
    return out, problems


def resolve_shares(
    entries: Sequence[TeamEntry], pools: Pools, namespace_floor: Mapping[str, Decimal] | None = None
) -> tuple[tuple[TeamConfig, ...], list[Problem]]:
    """Every team's share of every resource, and what in the entries cannot work.

    ``namespace_floor``: per resource, the least each namespace's ResourceQuota allows (raised to
    what the team's ClusterQueue may admit)."""
    floor = namespace_floor or {}
    guaranteed, problems = _guarantees(entries, pools)
    shares: dict[str, dict[str, Share]] = {e.name: {} for e in entries}
    for i, entry in enumerate(entries):
        for resource in RESOURCES:
            mine = guaranteed[resource][entry.name]
            limits = {f: entry.settings.get(s) for s, (r, f) in _FIELDS.items() if r == resource and f != "guaranteed"}
            lend = limits["lending_limit"]
            if lend is not None and lend > mine:
                setting = next(s for s, (r, f) in _FIELDS.items() if r == resource and f == "lending_limit")
                problems.append(
                    (
                        f"teams[{i}]",
                        entry.text,
                        f"{setting}={quantity_text(resource, lend)} is more than its guaranteed {resource} "
                        f"({quantity_text(resource, mine)}): a team lends only what it is guaranteed",
                    )
                )
            shares[entry.name][resource] = Share(mine, limits["borrowing_limit"], lend)
    remainder = {r: max(pools.of(r) - sum(guaranteed[r].values(), Decimal(0)), Decimal(0)) for r in RESOURCES}
    teams = []
    for entry in entries:
        resolved = {}
        for resource in RESOURCES:
            share = shares[entry.name][resource]
            lent_by_others = sum(
                (
                    s.guaranteed if s.lending_limit is None else s.lending_limit
                    for name, mine in shares.items()
                    if name != entry.name
                    for s in (mine[resource],)
                ),
                Decimal(0),
            )
            borrowable = lent_by_others + remainder[resource]
            if share.borrowing_limit is not None:
                borrowable = min(borrowable, share.borrowing_limit)
            most = share.guaranteed + borrowable
            limit = max(most, floor.get(resource, Decimal(0)))
            resolved[resource] = Share(share.guaranteed, share.borrowing_limit, share.lending_limit, most, limit)
        teams.append(
            TeamConfig(
                entry.name,
                resolved["cpu"],
                resolved["memory"],
                resolved["gpus"],
                weight=entry.settings.get("weight", Decimal(1)),
            )
        )
    return tuple(teams), problems
