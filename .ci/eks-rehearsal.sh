#!/usr/bin/env bash
# Rehearses docs/deploy-eks.md: the guide's fenced sh blocks, in order, are
# the script (there is no second copy of them here). Each block is
# shellchecked; then all of them run, in order, in one bash with
# `set -euo pipefail`, in a scratch copy of the repository (the guide's sed
# edits land there), with:
#   - every `aws` command run by the real AWS CLI against moto in server mode
#     on 127.0.0.1 (AWS_ENDPOINT_URL, fake credentials), so a wrong flag, a
#     wrong parameter name or a variable used before it is set fails the run;
#     the few calls moto lacks are answered from a canned response through
#     the command's own --query, each with a note, and counted;
#   - kubectl (against a cluster), eksctl, helm, docker and curl replaced by
#     the stand-ins of .ci/eks-rehearsal/tools.py, which print what they were
#     asked, answer plausibly and check what they can (manifests rendered by
#     the real `kubectl kustomize`, deploy/eks/cluster.yaml checked, the
#     cluster's VPC, Fargate profiles, IRSA roles and pushed images created
#     in the emulator).
# Afterwards every placeholder of the manifests must have been replaced and
# every overlay must still render, with its EKS images pinned by digest.
# The tools are pinned in .ci/eks-rehearsal-requirements.txt and installed
# into target/eks-rehearsal/venv (reused while the requirements match).
#   bash .ci/eks-rehearsal.sh [--prepare]   # --prepare: only install the tools
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
GUIDE=docs/deploy-eks.md
REQUIREMENTS=.ci/eks-rehearsal-requirements.txt
HERE=$ROOT/.ci/eks-rehearsal
WORK=$ROOT/target/eks-rehearsal
VENV=$WORK/venv

step() { printf '\n== %s\n' "$*"; }

for tool in python3 kubectl git; do
  command -v "$tool" >/dev/null || { echo "$tool is required" >&2; exit 1; }
done

step "tools ($REQUIREMENTS)"
mkdir -p "$WORK"
if [[ ! -x $VENV/bin/aws || ! -f $VENV/installed ]] || ! cmp -s "$REQUIREMENTS" "$VENV/installed"; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
  cp "$REQUIREMENTS" "$VENV/installed"
fi
"$VENV/bin/aws" --version
"$VENV/bin/shellcheck" --version | sed -n 2p
[ "${1:-}" = --prepare ] && exit 0

RUN=$(mktemp -d "$WORK/run.XXXXXX")
MOTO_PID=
cleanup() {
  if [[ -n $MOTO_PID ]]; then
    kill "$MOTO_PID" 2>/dev/null || true
    wait "$MOTO_PID" 2>/dev/null || true
  fi
  rm -rf "$RUN"
}
trap cleanup EXIT

step "the guide's blocks"
mkdir -p "$RUN/blocks"
# One file per fenced sh block, in order, named by its first line in the guide.
"$VENV/bin/python" - "$GUIDE" "$RUN/blocks" <<'PY'
import sys
from pathlib import Path

guide, out = Path(sys.argv[1]), Path(sys.argv[2])
lines = guide.read_text().splitlines()
count, block, start = 0, None, 0
for number, line in enumerate(lines, 1):
    if block is None and line.strip() == "```sh":
        block, start = [], number + 1
    elif block is not None and line.strip() == "```":
        count += 1
        (out / f"{count:02d}-line{start}.sh").write_text("\n".join(block) + "\n")
        block = None
    elif block is not None:
        block.append(line)
if block is not None:
    sys.exit(f"{guide}: a sh block opened at line {start - 1} is never closed")
if count == 0:
    sys.exit(f"{guide}: no sh blocks")
print(f"{count} sh blocks")
PY
mapfile -t BLOCKS < <(find "$RUN/blocks" -name '*.sh' | sort)

step "shellcheck, each block"
# SC2034 (assigned but unused) is left out: a block sets variables that later
# blocks of the same shell read.
checked=0
for block in "${BLOCKS[@]}"; do
  name=$(basename "$block" .sh)
  if ! "$VENV/bin/shellcheck" --shell=bash --severity=warning --exclude=SC2034 "$block"; then
    echo "shellcheck: $GUIDE block ${name#*-} (${name%%-*}) has findings" >&2
    exit 1
  fi
  checked=$((checked + 1))
done
echo "$checked blocks: no findings"

step "the AWS emulator (moto in server mode on 127.0.0.1)"
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# An account id of its own, so that a placeholder 123456789012 left in a
# manifest is told from the account. ACM certificates are issued at once;
# the AWS managed IAM policies exist, as in an account.
MOTO_ACCOUNT_ID=210987654321 MOTO_ACM_VALIDATION_WAIT=0 MOTO_IAM_LOAD_MANAGED_POLICIES=true \
  "$VENV/bin/moto_server" -H 127.0.0.1 -p "$PORT" >"$RUN/moto.log" 2>&1 &
MOTO_PID=$!
for _ in $(seq 1 100); do
  if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/moto-api/')" 2>/dev/null; then
    break
  fi
  kill -0 "$MOTO_PID" 2>/dev/null || { cat "$RUN/moto.log" >&2; echo "moto did not start" >&2; exit 1; }
  sleep 0.2
done
echo "moto on 127.0.0.1:$PORT"

step "the guide, block by block"
mkdir -p "$RUN/bin" "$RUN/state" "$RUN/home"
: >"$RUN/state/emulated"
: >"$RUN/state/stubbed"
# A scratch copy of the repository's files: the guide edits manifests in place.
mkdir "$RUN/repo"
git ls-files -z | tar --null -T - -cf - | tar -xf - -C "$RUN/repo"
REAL_KUBECTL=$(command -v kubectl)
cat >"$RUN/bin/aws" <<SH
#!/usr/bin/env bash
exec "$VENV/bin/python" "$HERE/awscli.py" "\$@"
SH
for tool in kubectl eksctl helm docker curl; do
  cat >"$RUN/bin/$tool" <<SH
#!/usr/bin/env bash
exec "$VENV/bin/python" "$HERE/tools.py" $tool "\$@"
SH
done
chmod +x "$RUN/bin/"*
{
  echo 'set -euo pipefail'
  for block in "${BLOCKS[@]}"; do
    name=$(basename "$block" .sh)
    printf 'printf "\\n--- block %s, %s line %s\\n" >&2\n' "${name%%-*}" "$GUIDE" "${name#*-line}"
    cat "$block"
  done
} >"$RUN/guide.sh"
# Nothing of the caller's AWS or Kubernetes configuration reaches the run.
if ! (
  cd "$RUN/repo"
  env -i \
    PATH="$RUN/bin:/usr/local/bin:/usr/bin:/bin" HOME="$RUN/home" LANG=C.UTF-8 \
    AWS_ENDPOINT_URL="http://127.0.0.1:$PORT" AWS_ACCESS_KEY_ID=rehearsal \
    AWS_SECRET_ACCESS_KEY=rehearsal AWS_DEFAULT_REGION=eu-west-1 AWS_PAGER= \
    AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null KUBECONFIG=/dev/null \
    REHEARSAL_REAL_AWS="$VENV/bin/aws" REHEARSAL_REAL_KUBECTL="$REAL_KUBECTL" \
    REHEARSAL_STATE="$RUN/state" \
    bash "$RUN/guide.sh"
); then
  echo "eks rehearsal: the guide failed (the last block header above names the block)" >&2
  exit 1
fi

step "the manifests the guide left"
problems=0
# Every placeholder the guide's table lists is replaced by the step that makes its value.
for placeholder in 123456789012 sg-0123456789abcdef0 sg-0fedcba9876543210 eu-west-1_EXAMPLE \
  orders-app-client-id 0000000000000000000000000000000000000000000000000000000000000000 \
  certificate/00000000-0000-0000-0000-000000000000 webacl/coffeemesh-orders/00000000; do
  # Outside comments, which may still speak of them.
  if found=$(grep -rlE -- "^[^#]*$placeholder" "$RUN/repo/k8s" "$RUN/repo/deploy"); then
    echo "placeholder $placeholder left in: ${found//$RUN\/repo\//}" >&2
    problems=$((problems + 1))
  fi
done
(
  cd "$RUN/repo"
  # Every kustomization (components render only inside one).
  for kustomization in $(grep -rL '^kind: Component' --include=kustomization.yaml k8s | xargs -n1 dirname | sort); do
    # An explicit exit: `set -e` does not apply inside a subshell whose
    # status `||` tests, so a kustomization that fails to render would
    # otherwise go unnoticed.
    if ! kubectl kustomize "$kustomization" >"$RUN/render.yaml"; then
      echo "$kustomization: does not render" >&2
      exit 1
    fi
    case "$kustomization" in
      k8s/overlays/eks* | k8s/opentelemetry-collector)
        if grep -E '^\s+image:' "$RUN/render.yaml" | grep -vqE '@sha256:[0-9a-f]{64}$'; then
          echo "$kustomization: an image not pinned by digest" >&2
          exit 1
        fi
        ;;
    esac
  done
) || problems=$((problems + 1))
if [[ $problems -ne 0 ]]; then
  echo "eks rehearsal: $problems problems in the manifests the guide left" >&2
  exit 1
fi
echo "no placeholder left; every kustomization renders; EKS images pinned by digest"

emulated=$(wc -l <"$RUN/state/emulated")
stubbed=$(wc -l <"$RUN/state/stubbed")
stubbed_list=$(sort "$RUN/state/stubbed" | uniq -c | awk '{printf "%s%s %s x%s", sep, $2, $3, $1; sep=", "}')
echo
echo "eks rehearsal: $emulated aws commands run against the emulator, $stubbed stubbed (${stubbed_list:-none}), $checked blocks shellchecked"
