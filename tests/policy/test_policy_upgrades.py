"""The policy pack passes on both pinned tables (``ml-platform:componentVersions``), CRDs included:
an upgrade rehearsal (up at previous, then at current) is never refused by the pack."""

from __future__ import annotations

import pytest
from mlpolicy.model import Resource
from mlpolicy.rules import MANDATORY, RULES, run_resource_rule, run_stack_rule

from mlplatform.capture import capture_stack
from tests.stacks import EKS_FROM_HERE

from .builders import resources_of


@pytest.mark.parametrize("stack", ["dev", "eks"])
@pytest.mark.parametrize("versions", ["previous", "current"])
def test_every_rule_passes_at_both_pinned_tables(stack: str, versions: str) -> None:
    overrides = {**(EKS_FROM_HERE if stack == "eks" else {}), "componentVersions": versions}
    resources: list[Resource] = resources_of(capture_stack(stack, overrides))
    crds = [r for r in resources if r.type == "kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition"]
    assert len(crds) == (12 if stack == "eks" else 1)  # JobSet's, the monitoring ten (and ProvisioningRequest)
    found = []
    for r in RULES:
        if r.level != MANDATORY:
            continue
        if r.resource_check:
            found += [f"{r.name}: {v.message}" for res in resources for v in run_resource_rule(r, res)]
        else:
            found += [f"{r.name}: {v.message}" for v in run_stack_rule(r, resources)]
    assert found == []
