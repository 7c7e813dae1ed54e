"""What an installed validating webhook refuses on create that no CRD schema or CEL rule expresses.

The object is refused all the same, so ``validate_manifest`` runs these after the CRD checks.
Only checks read in the upstream webhook source are here, each naming its source:

- JobSet v0.12.0 (sigs.k8s.io/jobset pkg/webhooks/jobset_webhook.go, ValidateCreate, after the
  webhook's defaulting of ``completionMode: Indexed``): ``dependsOn`` is not allowed on the first
  replicated job and must name an earlier one; the job and pod names it generates
  (``<jobset>-<replicatedJob>-<jobIndex>[-<podIndex>-<5 chars>]``) must be DNS-1035 labels;
  success and failure policies may target only replicated jobs of the set.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["WEBHOOKS", "jobset_errors"]

_DNS1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


def _dns1035(name: str, what: str) -> list[str]:
    errors = []
    if len(name) > 63:
        errors.append(f"{what} {name!r} is longer than 63 characters (shorten the JobSet or replicated job name)")
    if not _DNS1035.fullmatch(name):
        errors.append(f"{what} {name!r} is not a DNS-1035 label")
    return errors


def jobset_errors(jobset: Mapping[str, Any]) -> list[str]:
    spec = jobset.get("spec", {})
    name = jobset.get("metadata", {}).get("name", "")
    replicated = spec.get("replicatedJobs", [])
    errors: list[str] = []
    if replicated and "dependsOn" in replicated[0]:
        errors.append("spec.replicatedJobs[0].dependsOn: DependsOn can't be set for the first ReplicatedJob")
    earlier: set[str] = set()
    for i, job in enumerate(replicated):
        replicas = int(job.get("replicas", 1))
        errors += _dns1035(f"{name}-{job['name']}-{replicas - 1}", f"spec.replicatedJobs[{i}]: generated Job name")
        job_spec = job.get("template", {}).get("spec", {})
        completions = job_spec.get("completions")
        if job_spec.get("completionMode", "Indexed") == "Indexed" and completions is not None:
            pod = f"{name}-{job['name']}-{replicas - 1}-{int(completions) - 1}-abcde"
            errors += _dns1035(pod, f"spec.replicatedJobs[{i}]: generated Pod name")
        for dep in job.get("dependsOn", []) if i > 0 else []:
            if dep.get("name") not in earlier:
                errors.append(
                    f"spec.replicatedJobs[{i}].dependsOn: replicatedJob {job['name']} cannot depend on "
                    f"replicatedJob {dep.get('name')} (only on one listed before it)"
                )
        earlier.add(job["name"])
    targets = [("spec.successPolicy", spec.get("successPolicy", {}).get("targetReplicatedJobs", []))]
    for j, rule in enumerate(spec.get("failurePolicy", {}).get("rules", [])):
        targets.append((f"spec.failurePolicy.rules[{j}]", rule.get("targetReplicatedJobs", [])))
    for where, names in targets:
        errors += [f"{where}.targetReplicatedJobs: {n!r} is not a replicated job of this JobSet" for n in names
                   if n not in earlier]  # fmt: skip
    return errors


# (group, kind) -> the webhook's create-time checks.
WEBHOOKS: dict[tuple[str, str], Callable[[Mapping[str, Any]], list[str]]] = {
    ("jobset.x-k8s.io", "JobSet"): jobset_errors,
}
