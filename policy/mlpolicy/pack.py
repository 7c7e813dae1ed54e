"""The thin layer between the pure rules and the Pulumi policy SDK.

Props are handed to the rules as the SDK's read-only proxies: a rule that reads a value unknown
during preview raises the SDK's UnknownValueError, which the SDK reports as an advisory "can't run
during preview" instead of a false pass or a false violation.
"""

from __future__ import annotations

from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyConfigSchema,
    PolicyPack,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

from .model import Resource
from .rules import MANDATORY, RULES, Rule, check_stack, run_resource_rule

__all__ = ["PACK_NAME", "build_pack", "policies"]

PACK_NAME = "ml-platform"
_LEVELS = {MANDATORY: EnforcementLevel.MANDATORY}


def _schema(r: Rule) -> PolicyConfigSchema | None:
    return PolicyConfigSchema(properties={k: dict(v) for k, v in r.config.items()}) if r.config else None


def _resource_policy(r: Rule) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        resource = Resource(args.resource_type, args.name, args.props, args.urn)
        for violation in run_resource_rule(r, resource, args.get_config()):
            report_violation(violation.message, None)

    return ResourceValidationPolicy(
        r.name, r.description, validate, _LEVELS.get(r.level, EnforcementLevel.ADVISORY), _schema(r)
    )


def _stack_policy(r: Rule) -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        resources = [
            Resource(p.resource_type, p.name, p.props, p.urn, p.parent.urn if p.parent else "") for p in args.resources
        ]
        violations, pending = check_stack(r, resources, args.get_config(), unknown_errors=(UnknownValueError,))
        for violation in violations:
            report_violation(violation.message, violation.urn or None)
        if pending:
            # Everything known is judged and reported; the SDK adds its advisory "can't run ... during
            # preview" naming the value, instead of a silent pass for the part that waited on it.
            raise pending[0]

    return StackValidationPolicy(
        r.name, r.description, validate, _LEVELS.get(r.level, EnforcementLevel.ADVISORY), _schema(r)
    )


def policies() -> list[Policy]:
    return [_resource_policy(r) if r.resource_check else _stack_policy(r) for r in RULES]


def build_pack(**kwargs: Any) -> PolicyPack:
    """Start the pack's gRPC server (prints its port, then blocks): call only from ``__main__.py``."""
    return PolicyPack(name=PACK_NAME, policies=policies(), **kwargs)
