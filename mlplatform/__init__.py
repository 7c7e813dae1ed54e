"""The ML platform: a Kubernetes cluster (kind or EKS) and the services every ML team shares."""
