#!/usr/bin/env bash
# Build the pinned control-plane binaries from their Go modules into
#   ${LLMOPS_BIN_CACHE:-~/.cache/llmops/bin}/<component>-<version>/
# A component whose directory exists (with its .complete stamp) is not rebuilt.
#
#   build.sh [kube|etcd|kwok|helm|all]...      (default: all)
#
# Build times are appended to <cache>/build-times.log.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
cache=${LLMOPS_BIN_CACHE:-$HOME/.cache/llmops/bin}
mkdir -p "$cache"
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=readonly
# 2 cores here: one package at a time per core keeps memory bounded (kube-apiserver links ~1 GiB).
jobs=${LLMOPS_BUILD_JOBS:-$(nproc)}

# gomod_version <go.mod> <module>: the required version of module
gomod_version() {
  awk -v m="$2" '($1=="require" && $2==m){print $3; exit} ($1==m && $2 ~ /^v/){print $2; exit}' "$1"
}

log() { printf '[build] %s\n' "$*" >&2; }

# run <component> <version> <function>: build into a temp dir, then rename into place
run() {
  local comp=$1 ver=$2 fn=$3
  local dest="$cache/$comp-$ver"
  if [[ -f "$dest/.complete" ]]; then
    log "$comp $ver: cached at $dest"
    return 0
  fi
  local tmp="$cache/.$comp-$ver.tmp.$$"
  rm -rf "$tmp"; mkdir -p "$tmp"
  log "$comp $ver: building into $dest (this can take a while on a cold machine)"
  local t0=$SECONDS
  "$fn" "$ver" "$tmp"
  local dt=$((SECONDS - t0))
  touch "$tmp/.complete"
  rm -rf "$dest"; mv "$tmp" "$dest"
  printf '%s %s %s built in %ss (jobs=%s)\n' "$(date -u +%FT%TZ)" "$comp" "$ver" "$dt" "$jobs" >> "$cache/build-times.log"
  log "$comp $ver: done in ${dt}s"
}

build_kube() {
  local ver=$1 out=$2 minor major
  major=${ver#v}; major=${major%%.*}
  minor=${ver#v*.}; minor=${minor%%.*}
  local want
  want=$(gomod_version "$here/kube/go.mod" k8s.io/kubernetes)
  if [[ "$want" != "$ver" ]]; then
    echo "e2e/cluster/kube/go.mod pins k8s.io/kubernetes $want but versions.env says $ver: run e2e/cluster.sh gen" >&2
    return 1
  fi
  local ld="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=$ver -X $p.gitMajor=$major -X $p.gitMinor=$minor"
    ld+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  (cd "$here/kube" && go build -p "$jobs" -trimpath -ldflags "$ld" -o "$out/" \
     k8s.io/kubernetes/cmd/kube-apiserver \
     k8s.io/kubernetes/cmd/kube-controller-manager \
     k8s.io/kubernetes/cmd/kube-scheduler \
     k8s.io/kubernetes/cmd/kubectl)
}

build_etcd() {
  local ver=$1 out=$2
  local want
  want=$(gomod_version "$here/etcd/go.mod" go.etcd.io/etcd/server/v3)
  if [[ "$want" != "$ver" ]]; then
    echo "e2e/cluster/etcd/go.mod pins etcd $want but versions.env says $ver: run e2e/cluster.sh gen" >&2
    return 1
  fi
  (cd "$here/etcd" && go build -p "$jobs" -trimpath -ldflags "-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3)
}

build_kwok() {
  local ver=$1 out=$2
  GOBIN=$out GOFLAGS= go install -p "$jobs" -trimpath \
    -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$ver" "sigs.k8s.io/kwok/cmd/kwok@$ver"
}

build_helm() {
  local ver=$1 out=$2
  GOBIN=$out GOFLAGS= go install -p "$jobs" -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$ver" "helm.sh/helm/v4/cmd/helm@$ver"
}

targets=("$@")
[[ ${#targets[@]} -eq 0 || " ${targets[*]} " == *" all "* ]] && targets=(kube etcd kwok helm)
for t in "${targets[@]}"; do
  case $t in
    kube) run kube "$KUBE_VERSION" build_kube ;;
    etcd) run etcd "$ETCD_VERSION" build_etcd ;;
    kwok) run kwok "$KWOK_VERSION" build_kwok ;;
    helm) run helm "$HELM_VERSION" build_helm ;;
    *) echo "unknown component $t" >&2; exit 2 ;;
  esac
done
