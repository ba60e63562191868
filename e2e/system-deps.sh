#!/usr/bin/env bash
# Debian packages the tests need that a fresh machine may lack. Idempotent and quick when present.
set -euo pipefail
need=()
command -v openssl >/dev/null || need+=(openssl)
command -v go >/dev/null || need+=(golang-go)
[ ${#need[@]} -eq 0 ] && exit 0
sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
