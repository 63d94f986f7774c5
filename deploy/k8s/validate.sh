#!/usr/bin/env bash
# Renders every overlay with kustomize and validates the result against the Kubernetes
# schemas, offline. Custom resources (CloudNativePG's Cluster) have no bundled schema and are
# reported as warnings.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../local/tools.sh
source "$here/../local/tools.sh"
jifen_k8s_tools_install
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for overlay in "$here"/overlays/*/; do
  name=$(basename "$overlay")
  kubectl kustomize "$overlay" > "$out/$name.yaml"
  echo "== $name: $(grep -c '^kind:' "$out/$name.yaml") objects rendered"
  kubernetes-validate --strict --quiet "$out/$name.yaml"
done
echo "== every overlay is valid"
