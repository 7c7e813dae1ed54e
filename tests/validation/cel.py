"""CRD ``x-kubernetes-validations`` rules, evaluated with cel-python as the API server does on create.

What is mirrored from the API server (k8s.io/apiextensions-apiserver, Kubernetes 1.34):
- each rule runs where it is declared, with ``self`` bound to the value there (every item of an
  array, every value of a map), and only where that value is present;
- values are typed by the schema: ``integer`` is int, ``number`` double, strings of format
  ``duration``/``date-time``/``byte`` are durations/timestamps/bytes; property names that CEL
  cannot spell are also reachable escaped (``__namespace__``, ``__dash__``, ``__dot__``, ...);
- ``has(a.b)`` is an error when ``a`` itself is absent (not false, as cel-python has it);
- a rule that is false fails with its ``message`` (or ``messageExpression``, or ``failed rule: ...``),
  and a rule whose evaluation errors fails too (the API server refuses the object);
- transition rules (those reading ``oldSelf``) are not evaluated on create: they are counted as skipped.

What fails loudly instead of passing: a rule that does not parse, or calls a function that is
neither standard CEL nor one of the Kubernetes library functions implemented in ``k8s_functions``
(``UnsupportedRuleError``): a rule is never silently passed. ``optionalOldSelf`` rules are refused the
same way (cel-python has no optional type).
"""

from __future__ import annotations

import base64
import itertools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, cast

import celpy
import lark
import re2
from celpy import celtypes
from celpy.evaluation import CELEvalError, Evaluator, base_functions

__all__ = [
    "CelReport",
    "Rule",
    "UnsupportedRuleError",
    "compile_rule",
    "evaluate_rule",
    "k8s_functions",
    "rule_violations",
    "rules_in",
    "supported_functions",
    "to_cel",
]


class UnsupportedRuleError(AssertionError):
    """A rule this validator cannot evaluate faithfully: the check must fail, never pass."""


# Macros cel-python expands itself (``min`` with no argument is the Kubernetes list function).
MACROS = frozenset({"has", "dyn", "all", "exists", "exists_one", "map", "filter", "min"})
# Namespaced Kubernetes/cel-go library functions are called as ``<namespace>.<function>(...)``.
NAMESPACES = frozenset({"sets"})
VARIABLES = frozenset({"self", "oldSelf"})


# --- Kubernetes CEL library functions missing from cel-python ------------------------------------
# Semantics follow cel-go's ext.Strings/ext.Sets and k8s.io/apiserver/pkg/cel/library (lists, regex):
# indices are in code points; a bad argument raises ValueError (or TypeError), which cel-python turns
# into an evaluation error (the API server also refuses the object then).


class _Namespace:
    """What the identifier ``sets`` evaluates to, so ``sets.contains(a, b)`` reaches ``contains``."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


SETS = _Namespace("sets")


def _lower_ascii(s: str) -> celtypes.StringType:
    return celtypes.StringType("".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in s))


def _upper_ascii(s: str) -> celtypes.StringType:
    return celtypes.StringType("".join(chr(ord(c) - 32) if "a" <= c <= "z" else c for c in s))


def _char_at(s: str, i: int) -> celtypes.StringType:
    if not 0 <= i <= len(s):
        raise ValueError(f"index out of range: {i}")
    return celtypes.StringType(s[i : i + 1])


def _index_of(target: Any, item: Any, offset: int = 0) -> celtypes.IntType:
    if isinstance(target, celtypes.ListType):
        return celtypes.IntType(next((i for i, x in enumerate(target) if x == item), -1))
    if not 0 <= offset <= len(target):
        raise ValueError(f"index out of range: {offset}")
    return celtypes.IntType(target.find(item, offset))


def _last_index_of(target: Any, item: Any, offset: int | None = None) -> celtypes.IntType:
    if isinstance(target, celtypes.ListType):
        return celtypes.IntType(max((i for i, x in enumerate(target) if x == item), default=-1))
    if offset is None:
        return celtypes.IntType(target.rfind(item))
    if not 0 <= offset <= len(target):
        raise ValueError(f"index out of range: {offset}")
    return celtypes.IntType(target.rfind(item, 0, offset + len(item)))


def _replace(s: str, old: str, new: str, n: int = -1) -> celtypes.StringType:
    return celtypes.StringType(s.replace(old, new, n if n >= 0 else -1))


def _split(s: str, sep: str, n: int = -1) -> celtypes.ListType:
    if n == 0:
        return celtypes.ListType([])
    if sep == "":  # Go's strings.SplitN on "" splits into characters, the last one keeping the rest
        parts = list(s) if n < 0 or n >= len(s) else [*s[: n - 1], s[n - 1 :]]
    else:
        parts = s.split(sep, n - 1 if n > 0 else -1)
    return celtypes.ListType([celtypes.StringType(p) for p in parts])


def _substring(s: str, start: int, end: int | None = None) -> celtypes.StringType:
    end = len(s) if end is None else end
    if not 0 <= start <= end <= len(s):
        raise ValueError(f"substring({start}, {end}) out of range for a string of length {len(s)}")
    return celtypes.StringType(s[start:end])


def _trim(s: str) -> celtypes.StringType:
    return celtypes.StringType(s.strip())  # Go's strings.TrimSpace: Unicode white space


def _join(items: list[Any], sep: str = "") -> celtypes.StringType:
    if not all(isinstance(i, str) for i in items):
        raise TypeError("join() needs a list of strings")
    return celtypes.StringType(sep.join(items))


def _is_sorted(items: list[Any]) -> celtypes.BoolType:
    return celtypes.BoolType(all(a <= b for a, b in itertools.pairwise(items)))


def _sum(items: list[Any]) -> Any:
    total: Any = celtypes.IntType(0)
    for i, item in enumerate(items):
        total = item if i == 0 else total + item
    return total


def _max(items: list[Any]) -> Any:
    if not items:
        raise ValueError("max() of an empty list")
    return max(items)


def _find(s: str, pattern: str) -> celtypes.StringType:
    match = re2.search(pattern, s)
    return celtypes.StringType(match.group(0) if match else "")


def _find_all(s: str, pattern: str, n: int = -1) -> celtypes.ListType:
    found = [celtypes.StringType(m.group(0)) for m in re2.finditer(pattern, s)]
    return celtypes.ListType(found if n < 0 else found[:n])


def _contains(target: Any, *args: Any) -> Any:
    if target is SETS:  # sets.contains(list, sublist): every element of sublist is in list
        whole, part = args
        return celtypes.BoolType(all(x in whole for x in part))
    return base_functions["contains"](target, *args)


def _equivalent(target: Any, a: list[Any], b: list[Any]) -> celtypes.BoolType:
    if target is not SETS:
        raise TypeError("equivalent() is sets.equivalent(a, b)")
    return celtypes.BoolType(all(x in b for x in a) and all(x in a for x in b))


def _intersects(target: Any, a: list[Any], b: list[Any]) -> celtypes.BoolType:
    if target is not SETS:
        raise TypeError("intersects() is sets.intersects(a, b)")
    return celtypes.BoolType(any(x in b for x in a))


def k8s_functions() -> dict[str, Callable[..., Any]]:
    """The Kubernetes CEL library functions cel-python lacks, implemented here (each has a test)."""
    return {
        "lowerAscii": _lower_ascii,
        "upperAscii": _upper_ascii,
        "charAt": _char_at,
        "indexOf": _index_of,
        "lastIndexOf": _last_index_of,
        "replace": _replace,
        "split": _split,
        "substring": _substring,
        "trim": _trim,
        "join": _join,
        "isSorted": _is_sorted,
        "sum": _sum,
        "max": _max,
        "find": _find,
        "findAll": _find_all,
        "contains": _contains,
        "sets.contains": _contains,
        "sets.equivalent": _equivalent,
        "sets.intersects": _intersects,
    }


@cache
def _functions() -> dict[str, Callable[..., Any]]:
    # What the evaluator resolves: namespaced names are reached through the namespace object.
    functions = {name.rpartition(".")[2]: f for name, f in k8s_functions().items()}
    return cast(dict[str, Callable[..., Any]], functions)


@cache
def supported_functions() -> frozenset[str]:
    """Every function or macro name a rule may call: standard CEL (cel-python) plus ``k8s_functions``."""
    return frozenset(base_functions) | frozenset(k8s_functions()) | MACROS


# --- compiling and evaluating ---------------------------------------------------------------------


class _Evaluator(Evaluator):
    def sub_evaluator(self, ast: lark.Tree) -> Evaluator:
        return _Evaluator(ast, activation=self.activation)

    def macro_has_eval(self, exprlist: lark.Tree) -> Any:
        # CEL's has(a.f): whether map a has key f; an error (not false) when a itself is absent.
        node: Any = exprlist
        while isinstance(node, lark.Tree) and node.data != "member_dot" and len(node.children) == 1:
            node = node.children[0]
        if not (isinstance(node, lark.Tree) and node.data == "member_dot"):
            return CELEvalError("has() needs a field selection, e.g. has(self.field)")
        operand = self.visit(node.children[0])
        field = celtypes.StringType(cast(lark.Token, node.children[1]).value)
        if isinstance(operand, CELEvalError):
            return operand
        if isinstance(operand, celtypes.MapType):
            return celtypes.BoolType(field in operand)
        return CELEvalError(f"has() on a {type(operand).__name__}, not an object or map")


class _Runner(celpy.InterpretedRunner):
    def evaluate(self, context: Any) -> Any:
        return _Evaluator(ast=self.ast, activation=self.new_activation()).evaluate(context)


_ENV = celpy.Environment(runner_class=_Runner)


def _calls(tree: lark.Tree) -> set[str]:
    """The function, method and macro names an expression calls (``sets.contains`` with its namespace)."""
    names: set[str] = set()
    for node in tree.iter_subtrees():
        if node.data == "ident_arg":
            names.add(cast(lark.Token, node.children[0]).value)
        elif node.data == "member_dot_arg":
            name = cast(lark.Token, node.children[1]).value
            target = node.children[0]
            inner = target.children[0] if isinstance(target, lark.Tree) and len(target.children) == 1 else None
            ident = inner.children[0] if isinstance(inner, lark.Tree) and inner.data == "primary" else None
            if isinstance(ident, lark.Tree) and ident.data == "ident":
                namespace = cast(lark.Token, ident.children[0]).value
                if namespace in NAMESPACES:
                    name = f"{namespace}.{name}"
            names.add(name)
    return names


def _identifiers(tree: lark.Tree) -> set[str]:
    return {cast(lark.Token, n.children[0]).value for n in tree.iter_subtrees() if n.data == "ident"}


@dataclass(frozen=True)
class Compiled:
    runner: celpy.Runner
    transition: bool  # reads oldSelf: not evaluated on create


@cache
def compile_rule(text: str) -> Compiled:
    """Parse a rule once; UnsupportedRuleError if it does not parse or calls a function not implemented here."""
    try:
        tree = _ENV.compile(text)
    except Exception as err:  # cel-python's parse errors have no common base class
        raise UnsupportedRuleError(f"CEL rule does not parse: {text!r}: {err}") from err
    unknown = sorted(_calls(tree) - supported_functions())
    if unknown:
        raise UnsupportedRuleError(
            f"CEL rule calls {', '.join(unknown)}, which this validator does not implement: {text!r}. "
            "Add it to tests/validation/cel.py k8s_functions (with a test) rather than skipping the rule."
        )
    return Compiled(runner=_ENV.program(tree, functions=_functions()), transition="oldSelf" in _identifiers(tree))


@dataclass(frozen=True)
class Rule:
    """One ``x-kubernetes-validations`` entry."""

    rule: str
    message: str = ""
    message_expression: str = ""
    field_path: str = ""
    reason: str = ""
    optional_old_self: bool = False

    @classmethod
    def from_schema(cls, entry: Mapping[str, Any]) -> Rule:
        return cls(
            rule=entry["rule"],
            message=entry.get("message", ""),
            message_expression=entry.get("messageExpression", ""),
            field_path=entry.get("fieldPath", ""),
            reason=entry.get("reason", ""),
            optional_old_self=bool(entry.get("optionalOldSelf", False)),
        )


def rules_in(schema: Mapping[str, Any]) -> list[Rule]:
    return [Rule.from_schema(e) for e in schema.get("x-kubernetes-validations", [])]


def evaluate_rule(rule: Rule, value: Any) -> str | None:
    """None if the rule holds for ``value`` (a CEL value: see ``to_cel``), else why it does not.

    Transition rules cannot be evaluated here: callers skip them (``compile_rule(...).transition``).
    """
    if rule.optional_old_self:
        raise UnsupportedRuleError(f"optionalOldSelf rules are not supported: {rule.rule!r}")
    compiled = compile_rule(rule.rule)
    if compiled.transition:
        raise UnsupportedRuleError(f"transition rule (reads oldSelf) evaluated without an old object: {rule.rule!r}")
    try:
        result = compiled.runner.evaluate(_activation(value))
    except CELEvalError as err:
        return f"rule evaluation error: {_describe(err)}: {rule.rule}"
    if result is True or (isinstance(result, celtypes.BoolType) and bool(result)):
        return None
    if not isinstance(result, bool | celtypes.BoolType):
        return f"rule returned {result!r}, not a bool: {rule.rule}"
    return _message(rule, value)


def _activation(value: Any) -> Any:
    return {"self": value, "sets": SETS}


def _describe(err: CELEvalError) -> str:
    # cel-python's CELEvalError args: (its summary, the Python exception class, that exception's args).
    summary = str(err.args[0]) if err.args else "error"
    cause = err.args[2] if len(err.args) > 2 else None
    detail = "; ".join(str(c) for c in cause) if isinstance(cause, tuple) else ""
    return f"{summary} ({detail})" if detail else summary


def _message(rule: Rule, value: Any) -> str:
    if rule.message_expression:
        try:
            message = compile_rule(rule.message_expression).runner.evaluate(_activation(value))
            if isinstance(message, str) and message.strip():
                return str(message)
        except CELEvalError:
            pass  # the API server falls back to message, then to the rule itself
    return rule.message or f"failed rule: {rule.rule}"


# --- values typed by their schema -----------------------------------------------------------------

# k8s.io/apiserver/pkg/cel/escaping.go: identifiers a property name may not be used as verbatim.
_RESERVED = frozenset(
    {
        *("true", "false", "null", "in", "as", "break", "const", "continue", "else", "for", "function"),
        *("if", "import", "let", "loop", "package", "namespace", "return", "var", "void", "while"),
    }
)
_ESCAPABLE = re.compile(r"[a-zA-Z_.\-/][a-zA-Z0-9_.\-/]*")
_ESCAPES = {"__": "__underscores__", ".": "__dot__", "-": "__dash__", "/": "__slash__"}


def escape(name: str) -> str | None:
    """How a rule spells property ``name`` (None: a rule cannot reach it)."""
    if name in _RESERVED:
        return f"__{name}__"
    if not _ESCAPABLE.fullmatch(name):
        return None
    return re.sub(r"__|[./-]", lambda m: _ESCAPES[m.group(0)], name)


def to_cel(value: Any, schema: Mapping[str, Any]) -> Any:
    """``value`` as the CEL value the API server binds, typed by its schema."""
    if value is None:
        return None
    if isinstance(value, bool):
        return celtypes.BoolType(value)
    if isinstance(value, Mapping):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        out: dict[Any, Any] = {}
        for key, item in value.items():
            sub = properties.get(key, extra if isinstance(extra, Mapping) else {})
            converted = to_cel(item, sub)
            out[celtypes.StringType(key)] = converted
            alias = escape(key) if key in properties else None
            if alias is not None and alias != key:
                out[celtypes.StringType(alias)] = converted
        return celtypes.MapType(out)
    if isinstance(value, list | tuple):
        items = schema.get("items", {})
        return celtypes.ListType([to_cel(v, items) for v in value])
    kind = schema.get("type")
    if isinstance(value, int | float):
        if kind == "integer" or (kind is None and isinstance(value, int)):
            return celtypes.IntType(int(value))
        return celtypes.DoubleType(float(value))
    if isinstance(value, str) and kind == "string":
        fmt = schema.get("format")
        if fmt == "byte":
            return celtypes.BytesType(base64.b64decode(value))
        if fmt == "duration":
            return celtypes.DurationType(value)
        if fmt in ("date-time", "date"):
            return celtypes.TimestampType(value)
    return celtypes.StringType(value) if isinstance(value, str) else value


# --- walking an object with its schema ------------------------------------------------------------


@dataclass(frozen=True)
class CelReport:
    """What the rules did over one or more objects: the proof that the checks ran."""

    evaluated: int = 0
    transition_skipped: int = 0

    def __add__(self, other: CelReport) -> CelReport:
        return CelReport(self.evaluated + other.evaluated, self.transition_skipped + other.transition_skipped)


def _join_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def rule_violations(value: Any, schema: Mapping[str, Any], path: str = "") -> tuple[list[str], CelReport]:
    """Every CEL rule in ``schema`` evaluated at its place in ``value``: (``path: message`` list, counts)."""
    violations: list[str] = []
    evaluated = skipped = 0
    todo: list[tuple[Any, Mapping[str, Any], str]] = [(value, schema, path)]
    while todo:
        node, sub, where = todo.pop()
        if node is None:
            continue  # rules run only where a value is present
        rules = rules_in(sub)
        cel_value: Any = None
        for rule in rules:
            if not rule.optional_old_self and compile_rule(rule.rule).transition:
                skipped += 1  # the API server evaluates transition rules on update only
                continue
            if cel_value is None:
                cel_value = to_cel(node, sub)
            evaluated += 1
            failure = evaluate_rule(rule, cel_value)
            if failure is not None:
                at = where + rule.field_path if rule.field_path else where
                violations.append(f"{at or '<root>'}: Invalid value: {failure}")
        if isinstance(node, Mapping):
            properties = sub.get("properties", {})
            extra = sub.get("additionalProperties")
            for key, item in node.items():
                child = properties.get(key, extra if isinstance(extra, Mapping) else None)
                if child is not None:
                    todo.append((item, child, _join_path(where, key) if key in properties else f"{where}[{key}]"))
        elif isinstance(node, list) and isinstance(sub.get("items"), Mapping):
            todo += [(item, sub["items"], f"{where}[{i}]") for i, item in enumerate(node)]
    return sorted(violations), CelReport(evaluated, skipped)
