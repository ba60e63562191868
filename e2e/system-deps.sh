#!/usr/bin/env bash
# System tools the build and tests need beyond Python: checked, and installed from Debian's
# packages where Debian's version will do. Idempotent and quick when everything is present.
set -euo pipefail
command -v go >/dev/null || { echo "Go >= 1.26 is required (the control plane is built from Go modules)" >&2; exit 1; }
need=()
command -v openssl >/dev/null || need+=(openssl)
# rollout analysis tests scrape real tritonservers with it (tests/support/prometheus.py)
command -v prometheus >/dev/null || need+=(prometheus)
command -v ip >/dev/null || need+=(iproute2)           # the local node agent's pod network
command -v nsenter >/dev/null || need+=(util-linux)    # and its containers' namespaces
[ ${#need[@]} -eq 0 ] && exit 0
sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
