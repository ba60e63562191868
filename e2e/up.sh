#!/usr/bin/env bash
# The quick start: a local cluster, the operator, the examples — and a live view of them.
#
#   e2e/up.sh up     (make up)    start everything, apply examples/, watch until they settle
#   e2e/up.sh down   (make down)  stop the operator and the cluster
#
# Uses kind when a Docker engine answers (e2e/kind/), else the local control plane built from
# Go modules (e2e/cluster.sh). The operator runs as a local process with the cluster's
# kubeconfig; its log is e2e/.cluster/operator.log.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
state="$repo/e2e/.cluster"
namespace=llmops-demo
py="$repo/.venv/bin/python"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

operator_pid() { [[ -f "$state/operator.pid" ]] && kill -0 "$(cat "$state/operator.pid")" 2>/dev/null && cat "$state/operator.pid"; }

up() {
  say "installing the development environment (make dev)"
  make -C "$repo" --no-print-directory dev >/dev/null
  if docker info >/dev/null 2>&1; then
    say "Docker engine found: using kind (e2e/kind/)"
    "$repo/e2e/kind/create.sh"
    export KUBECONFIG="$state/kind-kubeconfig"
    storage_flags=()
  else
    say "no Docker engine: local control plane with kwok GPU nodes (first run builds it from Go modules)"
    "$repo/e2e/cluster.sh" up
    eval "$("$repo/e2e/cluster.sh" env)"
    storage_flags=(--static-volumes)  # no storage provisioner: pre-bound hostPath volumes
    export LLMOPS_REPOSITORY_STORAGE_CLASS=kwok-volume  # model repositories: kwok's simulated volumes
  fi
  mkdir -p "$state"
  say "installing the CRDs"
  kubectl apply --server-side --force-conflicts -f "$repo/crds" >/dev/null
  kubectl wait --for=condition=Established --timeout=60s crd -l app.kubernetes.io/part-of=llmops-operator >/dev/null
  if ! operator_pid >/dev/null; then
    say "starting the operator (log: e2e/.cluster/operator.log)"
    PYTHONPATH="$repo/operator" LLMOPS_RESYNC_SECONDS=10 nohup "$py" -m llmops --log-format plain \
      >>"$state/operator.log" 2>&1 &
    echo $! >"$state/operator.pid"
  fi
  say "applying examples/ into namespace $namespace"
  kubectl create namespace "$namespace" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  "$py" "$repo/e2e/demo_storage.py" "$namespace" "${storage_flags[@]}" | kubectl apply -f - >/dev/null
  # examples/finetunejob.yaml asks for the priority class "training", as a real cluster would define it
  kubectl apply -f - >/dev/null <<'YAML'
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata:
  name: training
value: 1000
preemptionPolicy: Never
description: Fine-tuning jobs of the quick start (examples/finetunejob.yaml).
YAML
  kubectl apply --server-side -n "$namespace" -f "$repo/examples" >/dev/null
  say "watching (Ctrl-C stops watching; everything keeps running until make down)"
  for _ in $(seq 1 20); do
    clear 2>/dev/null || true
    kubectl get llmops -n "$namespace" -o wide 2>&1 | sed 's/^/  /'
    echo
    kubectl get jobs,deployments,pods -n "$namespace" 2>&1 | sed 's/^/  /'
    sleep 3
  done
  say "events"
  kubectl get events -n "$namespace" --sort-by=.metadata.creationTimestamp 2>&1 | tail -20 | sed 's/^/  /'
}

down() {
  if pid=$(operator_pid); then
    say "stopping the operator"
    kill "$pid" && rm -f "$state/operator.pid"
  fi
  if docker info >/dev/null 2>&1; then
    "$repo/e2e/kind/create.sh" delete || true
  fi
  "$repo/e2e/cluster.sh" down
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
