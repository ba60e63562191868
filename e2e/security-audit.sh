#!/usr/bin/env bash
# Security audit of the Python code and its dependencies:
#   bandit    over operator/ and images/: medium findings and up are shown, a high one fails.
#             Exceptions are narrow `# nosec BXXX` comments, the reason on the line above.
#   pip-audit over the operator's and every image's pinned requirements, and over the installed
#             dev virtualenv (.venv, the full resolved set): a known vulnerability fails.
# Both tools live in their own pinned virtualenv (.venv-audit), like checkov in .venv-checkov:
# their dependencies must not move the project's pins.
#
#   e2e/security-audit.sh              # what CI runs
#   PIP_AUDIT_STRICT=1 e2e/security-audit.sh   # also fail when a package could not be looked up
#
# pip-audit asks PyPI's JSON API for advisories. Where only a package index is reachable (a
# mirror), it cannot look packages up: it says so for each one and, unless PIP_AUDIT_STRICT=1,
# that is reported, not failed.
set -euo pipefail
cd "$(dirname "$0")/.."

AUDIT_VENV=${AUDIT_VENV:-.venv-audit}
BANDIT_VERSION=1.9.4
PIP_AUDIT_VERSION=2.10.1
PROJECT_VENV=${VENV:-.venv}

section() { printf '\n==== %s\n' "$1"; }

stamp="$AUDIT_VENV/.installed-bandit-$BANDIT_VERSION-pip-audit-$PIP_AUDIT_VERSION"
if [[ ! -f $stamp ]]; then
  python3 -m venv "$AUDIT_VENV"
  "$AUDIT_VENV/bin/pip" install --quiet "bandit==$BANDIT_VERSION" "pip-audit==$PIP_AUDIT_VERSION"
  touch "$stamp"
fi

section "bandit $BANDIT_VERSION: operator/ images/"
"$AUDIT_VENV/bin/bandit" --recursive operator images --quiet --severity-level medium --exit-zero
"$AUDIT_VENV/bin/bandit" --recursive operator images --quiet --severity-level high --format custom \
  --msg-template '{abspath}:{line}: {test_id} {severity}: {msg}'
echo "bandit: no high-severity finding"

section "pip-audit $PIP_AUDIT_VERSION: pinned requirements of the operator and the images"
strict=()
[[ ${PIP_AUDIT_STRICT:-0} == 1 ]] && strict=(--strict)
requirements=$(mktemp)
trap 'rm -f "$requirements"' EXIT
"$AUDIT_VENV/bin/python" - >"$requirements" <<'EOF'
import tomllib

print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))
EOF
args=(--no-deps --disable-pip --requirement "$requirements")
for file in images/*/requirements.txt; do args+=(--requirement "$file"); done
report=$(mktemp)
trap 'rm -f "$requirements" "$report"' EXIT
"$AUDIT_VENV/bin/pip-audit" --progress-spinner off "${strict[@]}" "${args[@]}" 2>&1 | tee "$report"

if [[ -d $PROJECT_VENV ]]; then
  section "pip-audit $PIP_AUDIT_VERSION: everything installed in $PROJECT_VENV"
  site_packages=("$PROJECT_VENV"/lib/python3*/site-packages)
  "$AUDIT_VENV/bin/pip-audit" --progress-spinner off "${strict[@]}" --skip-editable --path "${site_packages[0]}" \
    2>&1 | tee -a "$report"
fi

unchecked=$(grep -c "could not be audited" "$report" || true)
if ((unchecked > 0)); then
  echo "pip-audit: NOTE: $unchecked packages could not be looked up (no advisory service reachable);" \
    "no vulnerability was found among the rest. PIP_AUDIT_STRICT=1 fails on this."
fi

section "security audit: done"
