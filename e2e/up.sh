#!/usr/bin/env bash
# The quick start: a local cluster, the operator from its chart, and the example pipeline
# (examples/pipeline/) with a live view of it and a summary at the end.
#
#   e2e/up.sh up     (make up)    start everything, run the pipeline until the rollout ends
#   e2e/up.sh down   (make down)  stop it all and drop the cluster
#
# Uses kind when a Docker engine answers (e2e/kind/), else the local control plane built from
# Go modules (e2e/cluster.sh) with the local node agent (e2e/agent/), which runs the pods of the
# pipeline's namespaces (and the operator's) as real processes. Logs: e2e/.cluster/*.log, the
# pods' under e2e/.cluster/agent/pods/.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
state="$repo/e2e/.cluster"
namespace=llmops-demo
system_namespace=llmops-system
prometheus_address=10.245.0.1:19090  # the agent's bridge: reachable from the host and from pods
py="$repo/.venv/bin/python"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }


agent_pid() { pidof_file "$state/agent.pid" e2e/agent; }
prometheus_pid() { pidof_file "$state/prometheus.pid" prometheus; }
# the pid in file $1 when that process still runs the command named $2 (pids are reused after a reboot)
pidof_file() { [[ -f "$1" ]] && grep -qa -- "$2" "/proc/$(cat "$1")/cmdline" 2>/dev/null && cat "$1"; }

up() {
  local started=$SECONDS
  say "installing what is needed (e2e/system-deps.sh, make dev)"
  "$repo/e2e/system-deps.sh"
  make -C "$repo" --no-print-directory dev >/dev/null
  if docker info >/dev/null 2>&1; then
    say "Docker engine found: the same pipeline on kind (e2e/kind/README.md)"
    exec "$repo/e2e/kind/up.sh"
  fi
  say "local control plane with kwok GPU nodes (the first run builds it from Go modules)"
  "$repo/e2e/cluster.sh" up
  eval "$("$repo/e2e/cluster.sh" env)"
  mkdir -p "$state"

  if ! agent_pid >/dev/null; then
    say "starting the local node agent: pods pinned to node llmops-local run as real processes (log: e2e/.cluster/agent.log)"
    nohup "$py" "$repo/e2e/agent" --state "$state/agent" >>"$state/agent.log" 2>&1 &
    echo $! >"$state/agent.pid"
  fi
  # `kubectl wait` gives up at once on a node that does not exist yet: wait for the agent to register it
  local tries
  for ((tries = 0; tries < 120; tries++)); do
    kubectl get node llmops-local >/dev/null 2>&1 && break
    agent_pid >/dev/null || { echo "the local node agent exited: see $state/agent.log" >&2; exit 1; }
    sleep 0.5
  done
  kubectl wait --for=condition=Ready node/llmops-local --timeout=60s >/dev/null

  if ! prometheus_pid >/dev/null; then
    say "starting Prometheus on $prometheus_address (scraping the pods the agent lists)"
    mkdir -p "$state/prometheus"
    "$py" "$repo/e2e/pipeline.py" prometheus-config --targets "$state/agent/scrape-targets.json" \
      >"$state/prometheus/prometheus.yml"
    nohup prometheus --config.file="$state/prometheus/prometheus.yml" --storage.tsdb.path="$state/prometheus/data" \
      --web.listen-address="$prometheus_address" --log.level=warn >>"$state/prometheus.log" 2>&1 &
    echo $! >"$state/prometheus.pid"
  fi

  say "installing the chart (charts/llmops-operator) into $system_namespace, watching $namespace"
  # Both namespaces run their pods on the agent's node (e2e/agent/README.md).
  local annotations
  annotations=$("$py" -c 'import json,sys; sys.path.insert(0,sys.argv[1]); import pipeline; print(json.dumps(pipeline.LOCAL_NODE))' "$repo/e2e")
  for ns in "$system_namespace" "$namespace"; do
    kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Namespace
metadata:
  name: $ns
  annotations: $annotations
YAML
  done
  helm upgrade --install llmops "$repo/charts/llmops-operator" --namespace "$system_namespace" \
    --set replicaCount=1 --set logFormat=plain --set "watchNamespaces={$namespace}" \
    --set config.prometheusUrl="http://$prometheus_address" --set config.resyncSeconds=5 \
    --set config.repositoryStorage.storageClassName=llmops-local --set config.repositoryStorage.size=1Gi \
    --wait --timeout 5m >/dev/null

  say "the example pipeline (examples/pipeline/) in namespace $namespace"
  "$py" "$repo/e2e/pipeline.py" prepare --namespace "$namespace"
  "$py" "$repo/e2e/pipeline.py" watch --namespace "$namespace"
  say "done in $((SECONDS - started)) s; everything keeps running until make down"
  echo "  kubectl get llmops -n $namespace        (export KUBECONFIG=$state/kubeconfig PATH=$state/bin:\$PATH)"
}

down() {
  if docker info >/dev/null 2>&1; then
    "$repo/e2e/kind/create.sh" delete || true
  fi
  local entry component pid
  # component:command; the agent stops its pods and removes its network
  for entry in prometheus:prometheus agent:e2e/agent; do
    component=${entry%%:*}
    if pid=$(pidof_file "$state/$component.pid" "${entry#*:}"); then
      say "stopping $component"
      kill "$pid"
      for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    fi
    rm -f "$state/$component.pid"
  done
  rm -rf "$state/agent" "$state/prometheus"  # pods' files, volumes, metrics
  "$repo/e2e/cluster.sh" down
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
