"""A tiny PromQL evaluator for instant vectors, over the real parser's AST, for testing expressions.

It covers what the platform's team queries use (selectors with = and =~, sum/max by, clamp_min,
arithmetic, comparison filters, ``and``, ``on (...)`` with ``group_left``), and refuses anything
else, so a query that grows beyond it fails loudly instead of being evaluated wrong.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import promql_parser

__all__ = ["Series", "evaluate"]

Labels = frozenset[tuple[str, str]]
Vector = dict[Labels, float]
# (metric name, labels, value)
Series = tuple[str, Mapping[str, str], float]

_ARITHMETIC = {"-": lambda a, b: a - b, "+": lambda a, b: a + b, "*": lambda a, b: a * b}
_COMPARISON = {">": lambda a, b: a > b, "<": lambda a, b: a < b}


def evaluate(expr: str, series: Sequence[Series]) -> dict[frozenset[tuple[str, str]], float] | float:
    """The value of ``expr`` over ``series``: a vector (labels -> value) or a scalar."""
    return _eval(promql_parser.parse(expr), series)


def _key(labels: Labels, on: Sequence[str] | None) -> Labels:
    return labels if on is None else frozenset((k, v) for k, v in labels if k in on)


def _eval(node: Any, series: Sequence[Series]) -> Vector | float:
    if isinstance(node, promql_parser.NumberLiteral):
        return float(node.val)
    if isinstance(node, promql_parser.ParenExpr):
        return _eval(node.expr, series)
    if isinstance(node, promql_parser.VectorSelector):
        return _select(node, series)
    if isinstance(node, promql_parser.AggregateExpr):
        return _aggregate(node, series)
    if isinstance(node, promql_parser.Call):
        if node.func.name != "clamp_min":
            raise NotImplementedError(node.func.name)
        vector, floor = _eval(node.args[0], series), _eval(node.args[1], series)
        assert isinstance(vector, dict) and isinstance(floor, float)
        return {k: max(v, floor) for k, v in vector.items()}
    if isinstance(node, promql_parser.BinaryExpr):
        return _binary(node, series)
    raise NotImplementedError(type(node).__name__)


def _select(node: Any, series: Sequence[Series]) -> Vector:
    out: Vector = {}
    for name, labels, value in series:
        if name != node.name:
            continue
        ok = True
        for m in node.matchers.matchers:
            have = labels.get(m.name, "")
            if str(m.op) == "MatchOp.Equal":
                ok &= have == m.value
            elif str(m.op) == "MatchOp.Re":
                ok &= re.fullmatch(m.value, have) is not None
            else:
                raise NotImplementedError(str(m.op))
        if ok:
            out[frozenset(labels.items())] = value
    return out


def _aggregate(node: Any, series: Sequence[Series]) -> Vector:
    op = str(node.op)
    if op not in ("sum", "max") or node.modifier is None or str(node.modifier.type) != "AggModifierType.By":
        raise NotImplementedError(str(node))
    vector = _eval(node.expr, series)
    assert isinstance(vector, dict)
    groups: dict[Labels, list[float]] = {}
    for labels, value in vector.items():
        groups.setdefault(_key(labels, list(node.modifier.labels)), []).append(value)
    return {k: (math.fsum(v) if op == "sum" else max(v)) for k, v in groups.items()}


def _binary(node: Any, series: Sequence[Series]) -> Vector | float:
    op = str(node.op)
    lhs, rhs = _eval(node.lhs, series), _eval(node.rhs, series)
    on: list[str] | None = None
    if node.modifier is not None and node.modifier.matching is not None:
        if str(node.modifier.matching.type) != "LabelModifierType.Include":
            raise NotImplementedError("ignoring (...)")
        on = list(node.modifier.matching.labels)
    if isinstance(lhs, float) and isinstance(rhs, float):
        return _ARITHMETIC[op](lhs, rhs)
    if op in _COMPARISON:
        assert isinstance(lhs, dict) and isinstance(rhs, float), "comparisons here filter a vector by a scalar"
        return {k: v for k, v in lhs.items() if _COMPARISON[op](v, rhs)}
    assert isinstance(lhs, dict) and isinstance(rhs, dict), "vector-scalar arithmetic is not used"
    right: dict[Labels, float] = {}
    for labels, value in rhs.items():
        key = _key(labels, on)
        assert key not in right, f"many-to-many match on {on}"
        right[key] = value
    if op == "and":
        return {k: v for k, v in lhs.items() if _key(k, on) in right}
    if op not in _ARITHMETIC:
        raise NotImplementedError(op)
    many_to_one = str(node.modifier.card) == "VectorMatchCardinality.ManyToOne" if node.modifier else False
    out: Vector = {}
    for labels, value in lhs.items():
        key = _key(labels, on)
        if key in right:
            # Arithmetic drops the metric name; one-to-one keeps the matched labels, group_left the lhs's.
            out[labels if many_to_one or on is None else key] = _ARITHMETIC[op](value, right[key])
    return out
