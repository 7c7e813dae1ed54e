"""Stack overrides the tests share."""

# Pulumi.eks.yaml leaves eksPublicAccessCidrs for each user to fill in with their own address (the
# program refuses to start otherwise). Tests stand in a documentation range (TEST-NET-3, RFC 5737).
EKS_FROM_HERE: dict[str, object] = {"eksPublicAccessCidrs": ["203.0.113.0/24"]}
