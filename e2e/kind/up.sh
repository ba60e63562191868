#!/usr/bin/env bash
# The quick start on kind (machines with a Docker engine): what e2e/up.sh does with the local
# node agent, here with real kubelets. `make up` calls it when `docker info` answers.
#
#   e2e/kind/up.sh            the example pipeline, promoted at the end (exit 0)
#   e2e/kind/up.sh --bad      the same with corrupted training labels: must be rolled back (exit 0)
#
# Steps: kind cluster (create.sh) → images built and loaded (make images) → Prometheus
# (prometheus-community chart, scraping annotated pods) → the operator's chart → the pipeline's
# namespace with claims on kind's default StorageClass, seeded through a helper pod →
# examples/pipeline → in-cluster traffic (traffic.yaml) → e2e/pipeline.py watch.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
py="$repo/.venv/bin/python"
namespace=${LLMOPS_DEMO_NAMESPACE:-llmops-demo}
bad=false
[[ ${1:-} == --bad ]] && { bad=true; namespace=${namespace}-bad; }
tag=$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/pyproject.toml")

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

"$here/create.sh"
export KUBECONFIG=${KUBECONFIG_OUT:-$repo/e2e/.cluster/kind-kubeconfig}
kind=$(command -v kind || ls "${LLMOPS_BIN_CACHE:-$HOME/.cache/llmops/bin}"/kind-*/kind | head -1)

say "building the images and loading them into kind"
make -C "$repo" --no-print-directory images
for image in operator builder trainer evaluator serving; do
  "$kind" load docker-image --name "${KIND_CLUSTER_NAME:-llmops}" "ghcr.io/llmops-dev/$image:$tag"
done

say "Prometheus (prometheus-community/prometheus: it scrapes pods annotated prometheus.io/scrape)"
helm repo add prometheus-community https://prometheus-community.github.io/helm-charts >/dev/null
helm upgrade --install prometheus prometheus-community/prometheus --namespace monitoring --create-namespace \
  --set alertmanager.enabled=false --set prometheus-pushgateway.enabled=false \
  --set server.global.scrape_interval=5s --wait --timeout 5m >/dev/null

say "the operator's chart"
helm upgrade --install llmops "$repo/charts/llmops-operator" --namespace llmops-system --create-namespace \
  --set replicaCount=1 --set config.prometheusUrl=http://prometheus-server.monitoring \
  --set config.resyncSeconds=10 --set config.repositoryStorage.size=1Gi --wait --timeout 5m >/dev/null

say "the pipeline in namespace $namespace"
kubectl create namespace "$namespace" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
for claim in models datasets model-repositories training-checkpoints; do
  kubectl apply -n "$namespace" -f - >/dev/null <<YAML
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: $claim}
spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
YAML
done
# The base model and the datasets are made here and copied onto the claims through a helper pod.
seed=$(mktemp -d)
"$py" - "$seed" "$bad" "$repo/e2e" <<'PY'
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[3])
import pipeline
seed = Path(sys.argv[1])
pipeline.write_seed(seed / "models", seed / "datasets", corrupt_labels=sys.argv[2] == "true")
PY
kubectl apply -n "$namespace" -f "$here/seed-pod.yaml" >/dev/null
kubectl wait -n "$namespace" --for=condition=Ready pod/seed --timeout=5m >/dev/null
kubectl cp "$seed/models/." "$namespace/seed:/mnt/pvc/models"
kubectl cp "$seed/datasets/." "$namespace/seed:/mnt/pvc/datasets"
kubectl delete -n "$namespace" pod/seed --wait=false >/dev/null
rm -rf "$seed"

kubectl apply --server-side -n "$namespace" -f "$repo/examples/pipeline" >/dev/null
kubectl apply -n "$namespace" -f "$here/traffic.yaml" >/dev/null
if $bad; then
  ! "$py" "$repo/e2e/pipeline.py" watch --namespace "$namespace" --no-traffic
else
  "$py" "$repo/e2e/pipeline.py" watch --namespace "$namespace" --no-traffic
fi
