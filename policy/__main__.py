"""The ml-platform policy pack: `pulumi preview --stack dev --policy-pack policy` runs this file.

Only builds the pack; the rules live in mlpolicy/ (pure functions, tested without gRPC).
Nothing may print before PolicyPack does: its first stdout line is the port the CLI connects to.
"""

from mlpolicy.pack import build_pack

build_pack(description="Kubernetes-for-ML guardrails: Pod Security restricted, Kueue, GPU pools, pinned versions.")
