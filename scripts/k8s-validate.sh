#!/usr/bin/env bash
# Checks the Kubernetes manifests in deploy/k8s/ against the API's own schemas, strictly: a field
# the API does not know (a misspelling, a field at the wrong level) is an error, not something a
# cluster would silently drop. No cluster is needed: kubernetes-validate (PyPI) carries the schemas
# of each Kubernetes version. This is the check that the manifests are well-formed; whether they
# run is for a cluster to say (deploy/k8s/00-namespace.yaml tells how).
#
#   scripts/k8s-validate.sh                 every deploy/k8s/*.yaml against Kubernetes 1.29
#   scripts/k8s-validate.sh FILE...         those files instead
#   K8S_VERSION=1.33.0 scripts/k8s-validate.sh
#
# The tool is installed once into a venv, target/k8s-venv (python3 -m venv; pinned versions, below).
# Exit status: 0 every document of every file is valid, 1 not (each failure is printed).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# 1.29: the oldest Kubernetes still commonly run when this was written; everything the manifests
# use (Indexed Jobs, podFailurePolicy, pod security labels) is in it.
k8s_version=${K8S_VERSION:-1.29.0}
venv=$root/target/k8s-venv
# kubernetes-validate and what it needs, as they were when this passed here.
pins=(
  kubernetes-validate==1.37.0
  jsonschema==4.26.0
  jsonschema-specifications==2025.9.1
  referencing==0.37.0
  rpds-py==2026.9.1
  attrs==26.1.0
  PyYAML==6.0.4
  packaging==26.4
  importlib_resources==7.1.0
  typing_extensions==4.16.0
)

if ! "$venv/bin/kubernetes-validate" --version 2>/dev/null | grep -q '1\.37\.0'; then
  echo "k8s-validate: installing kubernetes-validate into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  timeout 300 "$venv/bin/pip" install --quiet --disable-pip-version-check "${pins[@]}"
fi

if [ "$#" -gt 0 ]; then
  files=("$@")
else
  files=(deploy/k8s/*.yaml)
fi
for f in "${files[@]}"; do
  [ -f "$f" ] || {
    echo "k8s-validate: no such file: $f" >&2
    exit 1
  }
done

# kubernetes-validate exits non-zero on an invalid document; --strict turns unknown fields into
# failures. A kind or apiVersion it has no schema for it only warns about: these manifests use no
# custom resources, so that is a failure here too (an apiVersion the version has dropped, say).
# Every file is checked, and the status is whether all passed.
failed=0
for f in "${files[@]}"; do
  if ! out=$("$venv/bin/kubernetes-validate" --strict --kubernetes-version "$k8s_version" "$f" 2>&1); then
    failed=1
  fi
  printf '%s\n' "$out"
  if grep -q "Couldn't find schema" <<<"$out"; then
    echo "k8s-validate: $f names a kind or apiVersion that Kubernetes $k8s_version does not have" >&2
    failed=1
  fi
done
if [ "$failed" = 0 ]; then
  echo "k8s-validate: ${#files[@]} files valid against Kubernetes $k8s_version (strict)"
else
  echo "k8s-validate: invalid manifests (above), against Kubernetes $k8s_version (strict)" >&2
fi
exit "$failed"
