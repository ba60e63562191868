#!/usr/bin/env bash
# A real local Kubernetes control plane without containers: etcd, kube-apiserver,
# kube-controller-manager and kube-scheduler built from their Go modules, plus kwok
# simulating GPU and CPU nodes. See e2e/cluster/README.md.
#
#   e2e/cluster.sh bins        build the pinned binaries (cached; seconds when warm)
#   e2e/cluster.sh up          start the cluster, or reuse the one already running (restarting
#                              kwok alone when e2e/cluster/stages/ changed since it started)
#   e2e/cluster.sh down        stop every process `up` started and drop the cluster's data
#   e2e/cluster.sh status      what runs (exit 0 when the cluster is up and ready)
#   e2e/cluster.sh kubeconfig  print the admin kubeconfig path
#   e2e/cluster.sh env         print `export` lines: KUBECONFIG and PATH with kubectl/helm
#   e2e/cluster.sh which TOOL  print the path of a built tool (kubectl, helm, kwok, etcd, ...)
#   e2e/cluster.sh logs [NAME] tail the component logs
#   e2e/cluster.sh gen         regenerate the wrapper go.mod/go.sum from versions.env
#
# Environment (defaults in brackets):
#   LLMOPS_CLUSTER_DIR      state, logs, pids, kubeconfig            [e2e/.cluster]
#   LLMOPS_BIN_CACHE        built binaries                           [~/.cache/llmops/bin]
#   LLMOPS_APISERVER_PORT   kube-apiserver https on 127.0.0.1        [16443]
#   LLMOPS_ETCD_PORT        etcd client https on 127.0.0.1           [12379]
#   LLMOPS_ETCD_PEER_PORT   etcd peer https on 127.0.0.1             [12380]
#   LLMOPS_KCM_PORT         kube-controller-manager https (healthz)  [16257]
#   LLMOPS_SCHEDULER_PORT   kube-scheduler https (healthz)           [16259]
#   LLMOPS_SERVICE_CIDR     service-cluster-ip-range                 [10.96.0.0/16]
#   LLMOPS_POD_CIDR         pod IPs handed out by kwok               [10.244.0.1/16]
#   LLMOPS_UP_TIMEOUT       seconds to wait for readiness            [180]
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
here="$repo/e2e/cluster"
# shellcheck source=cluster/versions.env
source "$here/versions.env"

state=${LLMOPS_CLUSTER_DIR:-$repo/e2e/.cluster}
cache=${LLMOPS_BIN_CACHE:-$HOME/.cache/llmops/bin}
timeout=${LLMOPS_UP_TIMEOUT:-180}

kube_bin="$cache/kube-$KUBE_VERSION"
etcd_bin="$cache/etcd-$ETCD_VERSION"
kwok_bin="$cache/kwok-$KWOK_VERSION"
helm_bin="$cache/helm-$HELM_VERSION"

# the order in which components start; `down` stops them in reverse
components=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { printf '[cluster] error: %s\n' "$*" >&2; exit 1; }

# Ports: the values a running cluster was started with win over the environment, so
# `status`/`down` in another shell see the same cluster.
load_ports() {
  if [[ -f "$state/ports.env" ]] && any_running; then
    # shellcheck disable=SC1091
    source "$state/ports.env"
  fi
  APISERVER_PORT=${APISERVER_PORT:-${LLMOPS_APISERVER_PORT:-16443}}
  ETCD_PORT=${ETCD_PORT:-${LLMOPS_ETCD_PORT:-12379}}
  ETCD_PEER_PORT=${ETCD_PEER_PORT:-${LLMOPS_ETCD_PEER_PORT:-12380}}
  KCM_PORT=${KCM_PORT:-${LLMOPS_KCM_PORT:-16257}}
  SCHEDULER_PORT=${SCHEDULER_PORT:-${LLMOPS_SCHEDULER_PORT:-16259}}
  SERVICE_CIDR=${SERVICE_CIDR:-${LLMOPS_SERVICE_CIDR:-10.96.0.0/16}}
  POD_CIDR=${POD_CIDR:-${LLMOPS_POD_CIDR:-10.244.0.1/16}}
}

bin_of() {
  case $1 in
    etcd|etcdctl) echo "$etcd_bin/$1" ;;
    kube-apiserver|kube-controller-manager|kube-scheduler|kubectl) echo "$kube_bin/$1" ;;
    kwok) echo "$kwok_bin/kwok" ;;
    helm) echo "$helm_bin/helm" ;;
    *) return 1 ;;
  esac
}

# ---------------------------------------------------------------- processes

pidfile() { echo "$state/pids/$1.pid"; }

# pid of a running component we started, or nothing. A pid file whose process is gone or
# is some other program (pid reuse) does not count.
running_pid() {
  local f pid exe
  f=$(pidfile "$1")
  [[ -f $f ]] || return 1
  pid=$(<"$f")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  [[ $exe == "$(readlink -f "$(bin_of "$1")")" ]] || return 1
  echo "$pid"
}

any_running() {
  local c
  for c in "${components[@]}"; do running_pid "$c" >/dev/null && return 0; done
  return 1
}

all_running() {
  local c
  for c in "${components[@]}"; do running_pid "$c" >/dev/null || return 1; done
}

# start NAME ARGS...: run the component in its own session/process group, logs to a file
start() {
  local name=$1; shift
  local bin
  bin=$(bin_of "$name")
  [[ -x $bin ]] || die "$bin is missing: run e2e/cluster.sh bins"
  log "starting $name"
  # setsid makes the process a session and process-group leader: $! is its pid and pgid,
  # and `down` signals the whole group. stdin/stdout/stderr never point at the caller's
  # pipes, so a caller that captures our output is not held open by the daemons; and the
  # lock (fd 9) is closed, or the daemons would hold it for as long as they run.
  setsid "$bin" "$@" </dev/null >>"$state/logs/$name.log" 2>&1 9>&- &
  echo $! >"$(pidfile "$name")"
}

# stop NAME...: SIGTERM the process groups of the named components together, wait for them,
# SIGKILL whatever is left after 10s.
stop() {
  local name pid i pids=()
  for name in "$@"; do
    if pid=$(running_pid "$name"); then
      log "stopping $name (pid $pid)"
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
  done
  alive() { local p; for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && return 0; done; return 1; }
  if ((${#pids[@]})); then
    for ((i = 0; i < 100; i++)); do alive || break; sleep 0.1; done
    if alive; then
      log "$* did not exit after SIGTERM; sending SIGKILL"
      for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true; done
      for ((i = 0; i < 50; i++)); do alive || break; sleep 0.1; done
    fi
    # any straggler left in the groups
    for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
  fi
  for name in "$@"; do rm -f "$(pidfile "$name")"; done
}

# orphans: pids of our binaries that run against this state directory but are not recorded in
# pids/ (a pid file lost or overwritten). Matched by executable path AND a command line that
# names "$state/", so nothing else on the machine is touched.
orphans() {
  local c bin exe pid known=" "
  for c in "${components[@]}"; do
    pid=$(running_pid "$c") && known+="$pid "
  done
  local bins=" "
  for c in "${components[@]}"; do bins+="$(readlink -f "$(bin_of "$c")") "; done
  for exe in /proc/[0-9]*/exe; do
    pid=${exe#/proc/}; pid=${pid%/exe}
    bin=$(readlink "$exe" 2>/dev/null) || continue
    [[ $bins == *" $bin "* && $known != *" $pid "* ]] || continue
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$state/" || continue
    echo "$pid"
  done
}

stop_orphans() {
  local pid i
  for pid in $(orphans); do
    log "stopping orphaned $(readlink "/proc/$pid/exe" 2>/dev/null) (pid $pid, not in $state/pids)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---------------------------------------------------------------- PKI and kubeconfigs

pki() {
  local d="$state/pki"
  mkdir -p "$d"
  if [[ -f $d/front-proxy-client.crt && -f $d/.complete ]] && openssl x509 -checkend 86400 -noout -in "$d/ca.crt" >/dev/null; then
    return 0
  fi
  log "generating certificates in $d"
  rm -rf "$d"; mkdir -p "$d"; chmod 700 "$d"
  local svc_ip
  svc_ip=$(first_service_ip "$SERVICE_CIDR")
  openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -subj "/CN=llmops-local-ca" \
    -keyout "$d/ca.key" -out "$d/ca.crt" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  # leaf NAME SUBJECT EKU [SANS]
  leaf() {
    local name=$1 subj=$2 eku=$3 sans=${4:-}
    openssl req -newkey rsa:2048 -nodes -sha256 -subj "$subj" \
      -keyout "$d/$name.key" -out "$d/$name.csr" 2>/dev/null
    {
      echo "basicConstraints=critical,CA:FALSE"
      echo "keyUsage=critical,digitalSignature,keyEncipherment"
      echo "extendedKeyUsage=$eku"
      [[ -n $sans ]] && echo "subjectAltName=$sans"
    } >"$d/$name.ext"
    openssl x509 -req -sha256 -days 3650 -in "$d/$name.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" \
      -CAcreateserial -extfile "$d/$name.ext" -out "$d/$name.crt" 2>/dev/null
    rm -f "$d/$name.csr" "$d/$name.ext"
  }
  leaf apiserver "/CN=kube-apiserver" serverAuth \
    "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:$svc_ip"
  leaf etcd "/CN=etcd" serverAuth,clientAuth "DNS:localhost,IP:127.0.0.1"
  leaf apiserver-etcd-client "/CN=kube-apiserver-etcd-client" clientAuth
  leaf admin "/O=system:masters/CN=llmops-admin" clientAuth
  leaf kube-controller-manager "/CN=system:kube-controller-manager" clientAuth
  leaf kube-scheduler "/CN=system:kube-scheduler" clientAuth
  leaf kwok "/O=system:masters/CN=kwok-controller" clientAuth
  # aggregation layer (requestheader authentication): its own CA, as kubeadm does
  openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -subj "/CN=llmops-local-front-proxy-ca" \
    -keyout "$d/front-proxy-ca.key" -out "$d/front-proxy-ca.crt" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=front-proxy-client" \
    -keyout "$d/front-proxy-client.key" -out "$d/front-proxy-client.csr" 2>/dev/null
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' \
    >"$d/front-proxy-client.ext"
  openssl x509 -req -sha256 -days 3650 -in "$d/front-proxy-client.csr" -CA "$d/front-proxy-ca.crt" \
    -CAkey "$d/front-proxy-ca.key" -CAcreateserial -extfile "$d/front-proxy-client.ext" \
    -out "$d/front-proxy-client.crt" 2>/dev/null
  rm -f "$d/front-proxy-client.csr" "$d/front-proxy-client.ext"
  # service-account token signing key pair
  openssl genrsa -out "$d/sa.key" 2048 2>/dev/null
  openssl rsa -in "$d/sa.key" -pubout -out "$d/sa.pub" 2>/dev/null
  chmod 600 "$d"/*.key
  touch "$d/.complete"
}

first_service_ip() {
  local net=${1%/*} a b c d
  IFS=. read -r a b c d <<<"$net"
  echo "$a.$b.$c.$((d + 1))"
}

# kubeconfig FILE USER
kubeconfig_file() {
  local file=$1 user=$2 d="$state/pki"
  cat >"$file.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: llmops-local
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $(base64 -w0 <"$d/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 <"$d/$user.crt")
    client-key-data: $(base64 -w0 <"$d/$user.key")
contexts:
- name: llmops-local
  context:
    cluster: llmops-local
    user: $user
    namespace: default
current-context: llmops-local
EOF
  chmod 600 "$file.tmp"
  mv "$file.tmp" "$file"
}

# ---------------------------------------------------------------- readiness

curl_api() {
  local d="$state/pki"
  curl -fsS --max-time 5 --cacert "$d/ca.crt" --cert "$d/admin.crt" --key "$d/admin.key" \
    "https://127.0.0.1:$APISERVER_PORT$1"
}

kubectl_() { "$kube_bin/kubectl" --kubeconfig "$state/kubeconfig" "$@"; }

# wait_for WHAT CMD...: retry CMD until it succeeds or the deadline passes
wait_for() {
  local what=$1; shift
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      log "timed out after ${timeout}s waiting for $what"
      return 1
    fi
    local c
    for c in "${components[@]}"; do
      if [[ -f $(pidfile "$c") ]] && ! running_pid "$c" >/dev/null; then
        log "$c exited while waiting for $what; last lines of $state/logs/$c.log:"
        tail -n 30 "$state/logs/$c.log" >&2 || true
        return 1
      fi
    done
    sleep 0.5
  done
}

etcd_healthy() {
  local d="$state/pki"
  curl -fsS --max-time 3 --cacert "$d/ca.crt" --cert "$d/apiserver-etcd-client.crt" \
    --key "$d/apiserver-etcd-client.key" "https://127.0.0.1:$ETCD_PORT/health" | grep -q '"health":"true"'
}

default_sa() { kubectl_ -n default get serviceaccount default; }

nodes_ready() {
  local want have
  want=$(grep -c '^kind: Node' "$here/nodes.yaml")
  have=$(kubectl_ get nodes -l type=kwok \
    -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c '^True$')
  ((have >= want))
}

component_healthz() {
  local port=$1 d="$state/pki"
  # kcm and scheduler serve /healthz with a self-signed cert; anonymous /healthz is allowed
  curl -fsSk --max-time 3 "https://127.0.0.1:$port/healthz" | grep -q ok
}

# ---------------------------------------------------------------- commands

cmd_bins() { "$here/build.sh" all; }

cmd_gen() {
  "$here/gen-gomod.sh" "$here/kube" llmops.dev/e2e/cluster/kube k8s.io/kubernetes "$KUBE_VERSION" kube \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
  "$here/gen-gomod.sh" "$here/etcd" llmops.dev/e2e/cluster/etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION" same \
    go.etcd.io/etcd/server/v3
}

ready() {
  all_running && curl_api /readyz >/dev/null 2>&1 && default_sa >/dev/null 2>&1 && nodes_ready
}

cmd_up() {
  "$here/build.sh" all
  mkdir -p "$state"/{pids,logs,kubeconfigs,bin}
  exec 9>"$state/.lock"
  flock -w 600 9 || die "another up/down holds $state/.lock"
  load_ports

  if all_running && curl_api /readyz >/dev/null 2>&1; then
    log "cluster already running: reusing it"
    refresh_kwok
    ensure_nodes
    print_summary
    return 0
  fi
  if any_running; then
    log "a partial cluster is running: stopping it first"
    stop_all
  else
    stop_orphans
  fi
  # pid files of processes that are gone (a reboot, a fresh machine over the same checkout)
  # would read as components that died while starting
  rm -f "$state"/pids/*.pid
  local t0=$SECONDS p
  for p in "$APISERVER_PORT" "$ETCD_PORT" "$ETCD_PEER_PORT" "$KCM_PORT" "$SCHEDULER_PORT"; do
    port_busy "$p" && die "port 127.0.0.1:$p is in use by another process (override with LLMOPS_*_PORT)"
  done
  cat >"$state/ports.env" <<EOF
APISERVER_PORT=$APISERVER_PORT
ETCD_PORT=$ETCD_PORT
ETCD_PEER_PORT=$ETCD_PEER_PORT
KCM_PORT=$KCM_PORT
SCHEDULER_PORT=$SCHEDULER_PORT
SERVICE_CIDR=$SERVICE_CIDR
POD_CIDR=$POD_CIDR
EOF
  pki
  local d="$state/pki" kc="$state/kubeconfigs"
  kubeconfig_file "$state/kubeconfig" admin
  kubeconfig_file "$kc/kube-controller-manager.kubeconfig" kube-controller-manager
  kubeconfig_file "$kc/kube-scheduler.kubeconfig" kube-scheduler
  kubeconfig_file "$kc/kwok.kubeconfig" kwok
  local tool
  for tool in kubectl helm kwok etcd kube-apiserver kube-controller-manager kube-scheduler; do
    ln -sfn "$(bin_of "$tool")" "$state/bin/$tool"
  done
  rm -rf "$state/etcd-data"
  for c in "${components[@]}"; do : >"$state/logs/$c.log"; done

  start etcd \
    --name=llmops --data-dir="$state/etcd-data" \
    --listen-client-urls="https://127.0.0.1:$ETCD_PORT" --advertise-client-urls="https://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls="https://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls="https://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster="llmops=https://127.0.0.1:$ETCD_PEER_PORT" --initial-cluster-state=new \
    --cert-file="$d/etcd.crt" --key-file="$d/etcd.key" --trusted-ca-file="$d/ca.crt" --client-cert-auth \
    --peer-cert-file="$d/etcd.crt" --peer-key-file="$d/etcd.key" --peer-trusted-ca-file="$d/ca.crt" --peer-client-cert-auth \
    --unsafe-no-fsync=true --log-level=warn
  wait_for etcd etcd_healthy || fail_up

  # --endpoint-reconciler-type=none: the lease reconciler refuses a loopback advertise address
  # ("may not be in the loopback range"); nothing here reaches the apiserver through the
  # `kubernetes` Service, so that Service simply has no endpoints.
  start kube-apiserver \
    --advertise-address=127.0.0.1 --bind-address=127.0.0.1 --secure-port="$APISERVER_PORT" \
    --endpoint-reconciler-type=none \
    --etcd-servers="https://127.0.0.1:$ETCD_PORT" --etcd-cafile="$d/ca.crt" \
    --etcd-certfile="$d/apiserver-etcd-client.crt" --etcd-keyfile="$d/apiserver-etcd-client.key" \
    --tls-cert-file="$d/apiserver.crt" --tls-private-key-file="$d/apiserver.key" --client-ca-file="$d/ca.crt" \
    --service-account-key-file="$d/sa.pub" --service-account-signing-key-file="$d/sa.key" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --requestheader-client-ca-file="$d/front-proxy-ca.crt" --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$d/front-proxy-client.crt" --proxy-client-key-file="$d/front-proxy-client.key" \
    --authorization-mode=Node,RBAC \
    --enable-admission-plugins=NodeRestriction,ExtendedResourceToleration,PodNodeSelector,PodTolerationRestriction \
    --allow-privileged=true \
    --profiling=false --v=1
  wait_for "kube-apiserver /readyz" curl_api /readyz || fail_up

  start kube-controller-manager \
    --kubeconfig="$kc/kube-controller-manager.kubeconfig" \
    --authentication-kubeconfig="$kc/kube-controller-manager.kubeconfig" \
    --authorization-kubeconfig="$kc/kube-controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$KCM_PORT" --leader-elect=false \
    --use-service-account-credentials=true --service-account-private-key-file="$d/sa.key" \
    --root-ca-file="$d/ca.crt" --cluster-signing-cert-file="$d/ca.crt" --cluster-signing-key-file="$d/ca.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" --cluster-name=llmops-local \
    --profiling=false --v=1
  start kube-scheduler \
    --kubeconfig="$kc/kube-scheduler.kubeconfig" \
    --authentication-kubeconfig="$kc/kube-scheduler.kubeconfig" \
    --authorization-kubeconfig="$kc/kube-scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$SCHEDULER_PORT" --leader-elect=false \
    --profiling=false --v=1

  start_kwok

  wait_for "kube-controller-manager /healthz" component_healthz "$KCM_PORT" || fail_up
  wait_for "kube-scheduler /healthz" component_healthz "$SCHEDULER_PORT" || fail_up
  wait_for "the default ServiceAccount" default_sa || fail_up
  ensure_nodes
  log "cluster up in $((SECONDS - t0))s"
  print_summary
}

# gateway_api_crds: print the directory of the pinned Gateway API standard-channel CRDs, copied
# once from the Go module (the module cache is read-only and may be cleaned) into the cache.
gateway_api_crds() {
  local dir mod
  dir="$(dirname "$cache")/gateway-api-$GATEWAY_API_VERSION"
  if [[ ! -f $dir/.complete ]]; then
    mod=$(go mod download -json "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" |
      sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    [[ -d $mod/config/crd/standard ]] || die "no config/crd/standard in sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION"
    mkdir -p "$dir"
    install -m 0644 "$mod"/config/crd/standard/*.yaml "$dir/"
    touch "$dir/.complete"
  fi
  echo "$dir"
}

ensure_nodes() {
  local gateway_crds
  gateway_crds=$(gateway_api_crds)
  kubectl_ apply -f "$here/nodes.yaml" -f "$here/storageclass.yaml" >/dev/null
  # HTTPRoute for Rollouts' traffic routing; server-side: the CRDs exceed the client-side annotation limit
  kubectl_ apply --server-side --force-conflicts -f "$gateway_crds" >/dev/null
  wait_for "kwok nodes Ready" nodes_ready || fail_up
}

# kwok reads its Stages from config files (without them it exits "no stages found") only when
# it starts; the digest of the files it started with tells `up` when to restart it.
stages_digest() { cat "$here"/stages/*.yaml | sha256sum | cut -d' ' -f1; }

start_kwok() {
  local cfgs=() f
  for f in "$here"/stages/*.yaml; do cfgs+=(--config "$f"); done
  start kwok \
    --kubeconfig="$state/kubeconfigs/kwok.kubeconfig" \
    --manage-all-nodes=false \
    --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --node-lease-duration-seconds=40 \
    --cidr="$POD_CIDR" \
    "${cfgs[@]}"
  stages_digest >"$state/kwok-stages.sha256"
}

# A running cluster whose kwok started with other stage files gets a new kwok; the control
# plane and everything stored in it stay as they are.
refresh_kwok() {
  [[ $(cat "$state/kwok-stages.sha256" 2>/dev/null) == "$(stages_digest)" ]] && return 0
  log "kwok stages changed since kwok started: restarting kwok alone"
  stop kwok
  start_kwok
}

fail_up() {
  log "the cluster did not come up; logs are in $state/logs/"
  local c
  for c in "${components[@]}"; do
    if [[ -s $state/logs/$c.log ]]; then
      printf -- '----- %s (last 15 lines) -----\n' "$c" >&2
      tail -n 15 "$state/logs/$c.log" >&2
    fi
  done
  stop_all
  exit 1
}

stop_all() {
  # the clients of the apiserver together, then the apiserver, then etcd
  stop kwok kube-scheduler kube-controller-manager
  stop kube-apiserver
  stop etcd
  stop_orphans
}

cmd_down() {
  mkdir -p "$state"
  exec 9>"$state/.lock"
  flock -w 600 9 || die "another up/down holds $state/.lock"
  stop_all
  rm -rf "$state/etcd-data" "$state/ports.env"
  log "cluster down"
}

print_summary() {
  cat >&2 <<EOF
[cluster] kube-apiserver https://127.0.0.1:$APISERVER_PORT ($KUBE_VERSION), etcd $ETCD_VERSION, kwok $KWOK_VERSION
[cluster] export KUBECONFIG=$state/kubeconfig
[cluster] kubectl: $state/bin/kubectl   helm: $state/bin/helm
EOF
}

cmd_status() {
  load_ports
  local c pid rc=0
  for c in "${components[@]}"; do
    if pid=$(running_pid "$c"); then
      printf '%-24s running  pid %s\n' "$c" "$pid"
    else
      printf '%-24s stopped\n' "$c"; rc=1
    fi
  done
  local o
  o=$(orphans | tr '\n' ' ')
  [[ -z $o ]] || { printf '%-24s pids %s (not in %s/pids; `down` stops them)\n' orphaned "$o" "$state"; rc=1; }
  if ((rc == 0)) && curl_api /readyz >/dev/null 2>&1; then
    printf '%-24s ready    https://127.0.0.1:%s\n' apiserver "$APISERVER_PORT"
    kubectl_ get nodes -o wide 2>/dev/null || rc=1
  else
    rc=1
  fi
  return $rc
}

cmd_env() {
  echo "export KUBECONFIG=$state/kubeconfig"
  echo "export PATH=$state/bin:\$PATH"
}

cmd_logs() {
  if [[ $# -gt 0 ]]; then tail -n 100 "$state/logs/$1.log"; else tail -n 20 "$state"/logs/*.log; fi
}

case ${1:-} in
  bins) cmd_bins ;;
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  kubeconfig) echo "$state/kubeconfig" ;;
  env) cmd_env ;;
  which) [[ $# -eq 2 ]] || die "usage: $0 which TOOL"; bin_of "$2" || die "unknown tool $2" ;;
  logs) shift; cmd_logs "$@" ;;
  gen) cmd_gen ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
