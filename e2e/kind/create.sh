#!/usr/bin/env bash
# Create (or delete) a kind cluster for llmops-operator e2e tests. Needs a Docker engine,
# so it does not run on machines without one; use e2e/cluster.sh there.
#
#   e2e/kind/create.sh            create the cluster (reused when it exists)
#   e2e/kind/create.sh delete     delete it
#
# Environment: KIND_CLUSTER_NAME [llmops], KIND_NODE_IMAGE [kind's default for its version],
# KIND_VERSION [v0.33.0, used when `kind` is not on PATH: built with `go install`],
# KUBECONFIG_OUT [e2e/.cluster/kind-kubeconfig].
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
name=${KIND_CLUSTER_NAME:-llmops}
kind_version=${KIND_VERSION:-v0.33.0}
kubeconfig=${KUBECONFIG_OUT:-$repo/e2e/.cluster/kind-kubeconfig}

command -v docker >/dev/null || { echo "kind needs a Docker engine (docker not found); use e2e/cluster.sh" >&2; exit 1; }
docker info >/dev/null 2>&1 || { echo "the Docker engine is not reachable (docker info failed)" >&2; exit 1; }

kind=$(command -v kind || true)
if [[ -z $kind ]]; then
  bindir=${LLMOPS_BIN_CACHE:-$HOME/.cache/llmops/bin}/kind-$kind_version
  if [[ ! -x $bindir/kind ]]; then
    echo "building kind $kind_version into $bindir" >&2
    GOBIN=$bindir CGO_ENABLED=0 go install "sigs.k8s.io/kind@$kind_version"
  fi
  kind=$bindir/kind
fi

if [[ ${1:-} == delete ]]; then
  "$kind" delete cluster --name "$name"
  exit 0
fi

mkdir -p "$(dirname "$kubeconfig")"
if "$kind" get clusters 2>/dev/null | grep -qx "$name"; then
  echo "kind cluster $name exists: reusing it" >&2
  "$kind" get kubeconfig --name "$name" >"$kubeconfig"
else
  args=(create cluster --name "$name" --config "$here/kind-config.yaml" --kubeconfig "$kubeconfig" --wait 120s)
  [[ -n ${KIND_NODE_IMAGE:-} ]] && args+=(--image "$KIND_NODE_IMAGE")
  "$kind" "${args[@]}"
fi

export KUBECONFIG=$kubeconfig
# No real GPUs: advertise 8 fake nvidia.com/gpu on the GPU workers (status patch, as in
# "Advertise Extended Resources for a Node" in the Kubernetes docs) and taint them like
# e2e/cluster/nodes.yaml. Enough for scheduling; nothing can use the GPUs.
for node in $(kubectl get nodes -l llmops.dev/pool=gpu -o name); do
  kubectl patch "$node" --subresource=status --type=json \
    -p '[{"op":"add","path":"/status/capacity/nvidia.com~1gpu","value":"8"}]' >/dev/null
  kubectl taint --overwrite "$node" nvidia.com/gpu=present:NoSchedule >/dev/null
done
kubectl get nodes -L llmops.dev/pool -o wide
echo "export KUBECONFIG=$kubeconfig" >&2
