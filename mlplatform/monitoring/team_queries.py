"""PromQL for teams sharing quota: what each team's ClusterQueue uses, borrows and lends.

Kueue reports usage and nominal quota per ClusterQueue, flavor and resource, and the cohort's
whole quota (``kueue_cohort_subtree_quota``: every ClusterQueue's plus the Cohort's own), but not
who lent what. "Lent" is therefore derived: a team's unused guarantee (up to its lending limit)
that is covering other teams' borrowing beyond the quota nobody is guaranteed. When several teams
leave guarantees unused at once each shows up to the whole amount, so read it as "at most".
One source for the dashboard (dashboards/kueue.json, checked against these in tests) and the alert.
GPU-hours come from the recorded per-team series (``gpu_usage``), like the GPU dashboard's and the report's.
"""

from __future__ import annotations

__all__ = ["GPU", "borrowed", "in_use", "lent", "selector"]

GPU = 'resource="nvidia.com/gpu"'
_BY_TEAM = "cohort, cluster_queue, resource"


def selector(*matchers: str) -> str:
    """``{a, b}`` of the non-empty matchers (``""`` when none)."""
    kept = [m for m in matchers if m]
    return "{" + ", ".join(kept) + "}" if kept else ""


def in_use(resource: str = GPU, team: str = "") -> str:
    """Admitted usage per team."""
    return f"sum by (cluster_queue) (kueue_cluster_queue_resource_usage{selector(resource, team)})"


def borrowed(resource: str = GPU, team: str = "") -> str:
    """Usage above the team's guarantee, per team."""
    sel = selector(resource, team)
    return (
        f"sum by (cluster_queue) (clamp_min(kueue_cluster_queue_resource_usage{sel} "
        f"- kueue_cluster_queue_nominal_quota{sel}, 0))"
    )


def _lendable_unused(resource: str, team: str) -> str:
    sel = selector(resource, team)
    unused = (
        f"clamp_min(sum by ({_BY_TEAM}) (kueue_cluster_queue_nominal_quota{sel}) "
        f"- sum by ({_BY_TEAM}) (kueue_cluster_queue_resource_usage{sel}), 0)"
    )
    # An unset lending limit is reported as +Inf: min(unused, limit) = unused - max(unused - limit, 0).
    limit = f"sum by ({_BY_TEAM}) (kueue_cluster_queue_lending_limit{sel})"
    return f"({unused} - clamp_min({unused} - {limit}, 0))"


def _borrowed_beyond_shared(resource: str) -> str:
    """Per cohort: what teams borrow beyond the Cohort's own quota, i.e. out of others' guarantees."""
    sel = selector(resource)
    over = (
        f"sum by (cohort, resource) (clamp_min(kueue_cluster_queue_resource_usage{sel} "
        f"- kueue_cluster_queue_nominal_quota{sel}, 0))"
    )
    shared = (
        f"(sum by (cohort, resource) (kueue_cohort_subtree_quota{sel}) "
        f"- sum by (cohort, resource) (kueue_cluster_queue_nominal_quota{sel}))"
    )
    return f"clamp_min({over} - {shared}, 0)"


def lent(resource: str = GPU, team: str = "") -> str:
    """Per team and resource: its unused guarantee that others are using (at most)."""
    mine, beyond = _lendable_unused(resource, team), _borrowed_beyond_shared(resource)
    return f"({mine} - clamp_min({mine} - on (cohort, resource) group_left () {beyond}, 0))"
