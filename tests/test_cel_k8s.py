"""The CEL machinery of tests/validation/cel.py: Kubernetes semantics, library functions, loud failures."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.validation.cel import (
    Rule,
    UnsupportedRuleError,
    compile_rule,
    escape,
    evaluate_rule,
    k8s_functions,
    rule_violations,
    supported_functions,
    to_cel,
)
from tests.validation.crds import crd_versions


def holds(rule: str, value: Any = None, schema: Mapping[str, Any] | None = None) -> bool:
    failure = evaluate_rule(Rule(rule), to_cel({} if value is None else value, schema or {}))
    return failure is None


def test_every_rule_of_every_vendored_crd_compiles_with_supported_functions_only() -> None:
    rules = [r for v in crd_versions().values() for r in _rules(v.schema)]
    assert len(rules) > 50  # Kueue, JobSet and ProvisioningRequest CRDs carry rules
    for rule in rules:
        compile_rule(rule)  # raises UnsupportedRuleError otherwise


def test_every_rule_sits_where_the_validator_walks() -> None:
    # rule_violations descends properties, items and additionalProperties: a rule anywhere else
    # (under allOf, say) would never run, so every rule of every vendored CRD must be reachable so.
    for version in crd_versions().values():
        assert sorted(_reachable(version.schema)) == sorted(_rules(version.schema)), version.path


def _reachable(schema: Mapping[str, Any]) -> list[str]:
    found = [r["rule"] for r in schema.get("x-kubernetes-validations", [])]
    children = [*schema.get("properties", {}).values(), schema.get("items"), schema.get("additionalProperties")]
    return found + [r for child in children if isinstance(child, Mapping) for r in _reachable(child)]


def _rules(schema: Any) -> list[str]:
    if isinstance(schema, dict):
        own = [r["rule"] for r in schema.get("x-kubernetes-validations", [])]
        return own + [r for k, v in schema.items() if k != "x-kubernetes-validations" for r in _rules(v)]
    if isinstance(schema, list):
        return [r for v in schema for r in _rules(v)]
    return []


@pytest.mark.parametrize(
    "rule",
    [
        "self.url().getHost() == 'x'",  # Kubernetes URL library: not implemented
        "quantity(self.q).isGreaterThan(quantity('1'))",
        "isCIDR(self.c)",
        "optional.of(self.a).hasValue()",
        "false || self.name.noSuchFunction()",  # even behind a short-circuit that would skip it
    ],
)
def test_a_rule_calling_an_unimplemented_function_fails_loudly(rule: str) -> None:
    with pytest.raises(UnsupportedRuleError, match="does not implement"):
        compile_rule(rule)


def test_a_rule_that_does_not_parse_fails_loudly() -> None:
    with pytest.raises(UnsupportedRuleError, match="does not parse"):
        compile_rule("self.a ==")


def test_optional_old_self_rules_are_refused_not_passed() -> None:
    with pytest.raises(UnsupportedRuleError, match="optionalOldSelf"):
        evaluate_rule(Rule("self == oldSelf.orValue(self)", optional_old_self=True), to_cel({}, {}))


def test_transition_rules_are_skipped_on_create_and_counted() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf"}]}},
        "x-kubernetes-validations": [{"rule": "self.a != ''"}],
    }
    violations, report = rule_violations({"a": "x"}, schema)
    assert violations == [] and (report.evaluated, report.transition_skipped) == (1, 1)
    with pytest.raises(UnsupportedRuleError, match="transition"):
        evaluate_rule(Rule("self == oldSelf"), to_cel("x", {"type": "string"}))


def test_rules_run_at_every_item_and_map_value_with_a_kubernetes_path_and_message() -> None:
    schema = {
        "type": "object",
        "properties": {
            "items": {
                "type": "array",
                "items": {"type": "integer", "x-kubernetes-validations": [{"rule": "self > 0", "message": "positive"}]},
            },
            "labels": {
                "type": "object",
                "additionalProperties": {"type": "string", "x-kubernetes-validations": [{"rule": "size(self) < 3"}]},
            },
            "absent": {"type": "string", "x-kubernetes-validations": [{"rule": "false"}]},  # never runs
        },
    }
    violations, report = rule_violations({"items": [1, 0, 2], "labels": {"ok": "a", "bad": "abcd"}}, schema)
    assert violations == [
        "items[1]: Invalid value: positive",
        "labels[bad]: Invalid value: failed rule: size(self) < 3",
    ]
    assert report.evaluated == 5


def test_message_expression_and_field_path_are_reported() -> None:
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer"}},
        "x-kubernetes-validations": [
            {"rule": "self.n < 3", "messageExpression": "'n is ' + string(self.n)", "fieldPath": ".n"},
            {"rule": "self.n < 2", "messageExpression": "self.missing", "message": "fallback"},
        ],
    }
    violations, _ = rule_violations({"n": 5}, schema, "spec")
    assert violations == ["spec.n: Invalid value: n is 5", "spec: Invalid value: fallback"]


def test_an_evaluation_error_fails_the_rule() -> None:
    failure = evaluate_rule(Rule("self.missing == 1"), to_cel({}, {"type": "object"}))
    assert failure is not None and failure.startswith("rule evaluation error")


def test_has_is_an_error_when_its_operand_is_absent_as_on_the_api_server() -> None:
    assert holds("!has(self.a)") and holds("has(self.a)", {"a": 1})
    assert not holds("!has(self.a.b)")  # self.a is absent: an error, so the rule fails
    assert holds("self.all(x, has(x.k))", None) and holds("[{'k': 1}].all(x, has(x.k))")


def test_values_are_typed_by_their_schema() -> None:
    schema = {
        "type": "object",
        "properties": {
            "i": {"type": "integer"},
            "f": {"type": "number"},
            "d": {"type": "string", "format": "duration"},
            "t": {"type": "string", "format": "date-time"},
            "b": {"type": "string", "format": "byte"},
        },
    }
    value = {"i": 2.0, "f": 2, "d": "90s", "t": "2025-01-02T03:04:05Z", "b": "aGk="}
    assert holds("self.i == 2 && self.f == 2.0 && self.d == duration('1m30s')", value, schema)
    assert holds("self.t.getFullYear() == 2025 && self.b == b'hi'", value, schema)


def test_property_names_are_reachable_escaped_like_the_api_server() -> None:
    assert (escape("namespace"), escape("a-b"), escape("x.y/z"), escape("a__b"), escape("plain")) == (
        "__namespace__",
        "__dash__".join("ab"),
        "x__dot__y__slash__z",
        "a__underscores__b",
        "plain",
    )
    assert escape("has space") is None
    schema = {"type": "object", "properties": {"namespace": {"type": "string"}, "max-surge": {"type": "string"}}}
    assert holds("self.__namespace__ == 'x' && self.namespace == 'x' && self.max__dash__surge == 'y'",
                 {"namespace": "x", "max-surge": "y"}, schema)  # fmt: skip


@pytest.mark.parametrize(
    "rule",
    [
        "'ABc'.lowerAscii() == 'abc' && 'abC'.upperAscii() == 'ABC' && 'ÄB'.lowerAscii() == 'Äb'",
        "'abc'.charAt(1) == 'b' && 'abc'.charAt(3) == ''",
        "'a-b-c'.indexOf('-') == 1 && 'a-b-c'.indexOf('-', 2) == 3 && 'abc'.indexOf('z') == -1",
        "'a-b-c'.lastIndexOf('-') == 3 && 'a-b-c'.lastIndexOf('-', 2) == 1",
        "[1, 2, 1].indexOf(1) == 0 && [1, 2, 1].lastIndexOf(1) == 2 && [1].indexOf(3) == -1",
        "'aaa'.replace('a', 'b') == 'bbb' && 'aaa'.replace('a', 'b', 2) == 'bba'",
        "'a,b,c'.split(',') == ['a', 'b', 'c'] && 'a,b,c'.split(',', 2) == ['a', 'b,c']",
        "'ab'.split('') == ['a', 'b'] && 'abc'.split('', 2) == ['a', 'bc']",
        "'a,b'.split(',', 0) == []",
        "'hello'.substring(1) == 'ello' && 'hello'.substring(1, 3) == 'el'",
        "' \\t x \\n'.trim() == 'x'",
        "['a', 'b'].join() == 'ab' && ['a', 'b'].join('-') == 'a-b'",
        "[1, 2, 2].isSorted() && !([2, 1].isSorted()) && ['a', 'b'].isSorted()",
        "[1, 2, 3].sum() == 6 && [].sum() == 0 && [1.5, 1.5].sum() == 3.0",
        "[3, 1, 2].min() == 1 && [3, 1, 2].max() == 3",
        "'abc123'.find('[0-9]+') == '123' && 'abc'.find('[0-9]') == ''",
        "'a1b2c3'.findAll('[0-9]') == ['1', '2', '3'] && 'a1b2c3'.findAll('[0-9]', 2) == ['1', '2']",
        "sets.contains([1, 2, 3], [1, 3]) && !sets.contains([1], [2]) && sets.contains([1], [])",
        "sets.equivalent([1, 2], [2, 1, 1]) && !sets.equivalent([1], [1, 2])",
        "sets.intersects([1, 2], [2, 3]) && !sets.intersects([1], [2])",
        "'abc'.contains('b') && 'abc'.startsWith('a') && 'abc'.matches('^a.c$')",
    ],
)
def test_kubernetes_library_functions(rule: str) -> None:
    assert holds(rule), rule


@pytest.mark.parametrize(
    "rule",
    [
        "'abc'.charAt(4) == ''",
        "'abc'.substring(2, 1) == ''",
        "'abc'.indexOf('a', 9) == -1",
        "[].max() == 0",
        "[1, 'a'].join() == ''",
    ],
)
def test_kubernetes_library_functions_reject_bad_arguments_with_an_error(rule: str) -> None:
    failure = evaluate_rule(Rule(rule), to_cel({}, {}))
    assert failure is not None and "evaluation error" in failure


def test_every_implemented_function_is_supported_and_exercised_above() -> None:
    implemented = set(k8s_functions())
    assert implemented <= supported_functions()
    source = Path(__file__).read_text()  # each implemented function has a case in this module
    assert [f for f in implemented if f.rpartition(".")[2] + "(" not in source] == []
