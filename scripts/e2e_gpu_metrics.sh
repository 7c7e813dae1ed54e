#!/usr/bin/env bash
# While the dev stack's training run holds its (simulated) GPUs, read the GPU exporter until it serves
# a DCGM_FI_DEV_GPU_UTIL series labelled with a training pod that has a GPU. Started in the background
# before `pulumi up` (which returns only once training is complete), it waits for the kind cluster too.
#
#   bash scripts/e2e_gpu_metrics.sh OUT_FILE
#
# Writes the series found to OUT_FILE and exits 0; exits 1 if none appeared within TIMEOUT_SECONDS.
# Environment: KIND_CLUSTER (default ml-platform), NAMESPACE (default bookstore-ml), TIMEOUT_SECONDS
# (default 2400), EXPORTER (default the simulated exporter's Service in gpu-operator, through the API
# server's proxy: with monitoring on, a NetworkPolicy admits only Prometheus there; e2e runs without).
set -euo pipefail
out="$1"
cluster="${KIND_CLUSTER:-ml-platform}"
namespace="${NAMESPACE:-bookstore-ml}"
exporter="${EXPORTER:-/api/v1/namespaces/gpu-operator/services/nvidia-dcgm-exporter:gpu-metrics/proxy/metrics}"
deadline=$((SECONDS + ${TIMEOUT_SECONDS:-2400}))
kc="$(mktemp)"; trap 'rm -f "$kc"' EXIT
# name, phase and GPUs of the training pods that hold GPUs (the simulator counts a pod's first container)
pods_jsonpath='{range .items[*]}{.metadata.name}{" "}{.status.phase}{" "}{.spec.containers[0].resources.limits.nvidia\.com/gpu}{"\n"}{end}'
while :; do
  if kind get kubeconfig --name "$cluster" > "$kc" 2>/dev/null; then
    pods="$(kubectl --kubeconfig "$kc" -n "$namespace" get pods -l app.kubernetes.io/name=bookstore-train \
      -o "jsonpath=$pods_jsonpath" 2>/dev/null | awk '$2 == "Running" && $3 > 0 {print $1}' || true)"
    if [ -n "$pods" ]; then
      metrics="$(kubectl --kubeconfig "$kc" get --raw "$exporter" 2>/dev/null || true)"
      for pod in $pods; do
        series="$(printf '%s\n' "$metrics" | grep -E "^DCGM_FI_DEV_GPU_UTIL\{.*pod=\"$pod\"" || true)"
        if [ -n "$series" ]; then
          printf '%s\n' "$series" > "$out"
          echo "the GPU of running training pod $pod: $series"
          exit 0
        fi
      done
    fi
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "no DCGM_FI_DEV_GPU_UTIL series for the GPU of a running training pod in $namespace within" \
         "${TIMEOUT_SECONDS:-2400}s (training pods with GPUs seen running: ${pods:-none})" >&2
    exit 1
  fi
  sleep 2
done
