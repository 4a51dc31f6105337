#!/usr/bin/env bash
# Builds (or reuses) the pinned Argo CD into a per-version folder of the tools cache, outside the
# repository, and prints the path of the `argocd` binary as its last line (progress goes to stderr).
#
# The folder holds what the components need to run as host processes:
#   argocd                           the one binary; it acts as each component by its argv[0] name
#   argocd-server, argocd-repo-server, argocd-application-controller   symlinks to it
#   git-verify-wrapper.sh, gpg-wrapper.sh   from the module's hack/: the repo-server runs them on
#                                    every manifest generation, so the folder goes first on PATH
#   crds/                            the Application, AppProject and ApplicationSet CRDs (manifests/crds)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"
export GOTOOLCHAIN=$ARGOCD_GOTOOLCHAIN

out="${ARGOCD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cloudify-cluster-operator/argocd}/${ARGOCD_VERSION}"
components=(argocd-server argocd-repo-server argocd-application-controller)
wrappers=(git-verify-wrapper.sh gpg-wrapper.sh)
complete=1
[ -x "$out/argocd" ] || complete=0
for f in "${components[@]}" "${wrappers[@]}" crds/application-crd.yaml crds/appproject-crd.yaml; do [ -e "$out/$f" ] || complete=0; done
if [ $complete -eq 1 ]; then echo "$out/argocd present" >&2; echo "$out/argocd"; exit 0; fi

if ! command -v go >/dev/null 2>&1; then
  echo "No Argo CD binary in $out: install Go (any version that can fetch GOTOOLCHAIN=$ARGOCD_GOTOOLCHAIN) to build it (make argocd)." >&2
  exit 1
fi

mkdir -p "$out"
cd "$here"
pkg=github.com/argoproj/argo-cd/v3/common
kubectl_version=$(go list -m -f '{{if .Replace}}{{.Replace.Version}}{{else}}{{.Version}}{{end}}' k8s.io/client-go)
ldflags="-s -w -X ${pkg}.version=${ARGOCD_VERSION#v} -X ${pkg}.gitTag=${ARGOCD_VERSION}"
ldflags+=" -X ${pkg}.gitTreeState=clean -X ${pkg}.kubectlVersion=${kubectl_version}"
if [ ! -x "$out/argocd" ]; then
  echo "Building Argo CD ${ARGOCD_VERSION} with ${ARGOCD_GOTOOLCHAIN} into $out (about 10 minutes, 2.3 GB on 2 cores) ..." >&2
  start=$(date +%s)
  CGO_ENABLED=0 GODEBUG="tarinsecurepath=0,zipinsecurepath=0" \
    go build -trimpath -ldflags "$ldflags" -o "$out/argocd.tmp" github.com/argoproj/argo-cd/v3/cmd
  mv "$out/argocd.tmp" "$out/argocd"
  echo "Built argocd in $(( $(date +%s) - start ))s" >&2
fi
for c in "${components[@]}"; do ln -sf argocd "$out/$c"; done
moddir=$(go list -m -f '{{.Dir}}' github.com/argoproj/argo-cd/v3)
for w in "${wrappers[@]}"; do install -m 0755 "$moddir/hack/$w" "$out/$w"; done
mkdir -p "$out/crds"
for c in application-crd.yaml appproject-crd.yaml applicationset-crd.yaml; do install -m 0644 "$moddir/manifests/crds/$c" "$out/crds/$c"; done
echo "$out/argocd"
