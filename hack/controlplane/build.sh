#!/usr/bin/env bash
# Builds (or reuses) etcd, kube-apiserver and kube-controller-manager for the pinned versions
# into a per-version cache outside the repository, and prints that folder on stdout.
# Arguments name other binaries of the same wrapper module instead (hack/node/build.sh asks for
# kubelet kube-scheduler kube-proxy).
#
# KUBEBUILDER_ASSETS (a folder with etcd and kube-apiserver, as setup-envtest lays it out)
# wins when set: nothing is built. Progress goes to stderr.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"

if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ $# -eq 0 ]; then
  for b in etcd kube-apiserver; do
    [ -x "$KUBEBUILDER_ASSETS/$b" ] || { echo "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS has no executable $b" >&2; exit 1; }
  done
  echo "$KUBEBUILDER_ASSETS"
  exit 0
fi

out="${CONTROLPLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cloudify-cluster-operator/controlplane}/${K8S_VERSION}"
bins=("$@")
[ ${#bins[@]} -gt 0 ] || bins=(etcd kube-apiserver kube-controller-manager)
missing=()
for b in "${bins[@]}"; do [ -x "$out/$b" ] || missing+=("$b"); done
if [ ${#missing[@]} -eq 0 ]; then echo "$out"; exit 0; fi

if ! command -v go >/dev/null 2>&1; then
  echo "No control plane binaries: install Go 1.26+ to build them (make controlplane), or set KUBEBUILDER_ASSETS to a folder with etcd and kube-apiserver (setup-envtest)." >&2
  exit 1
fi

mkdir -p "$out"
minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
pkg=k8s.io/component-base/version
ldflags="-s -w -X ${pkg}.gitVersion=${K8S_VERSION} -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=${minor}"
ldflags+=" -X ${pkg}.gitTreeState=clean -X ${pkg}.buildDate=1970-01-01T00:00:00Z"
ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=${K8S_VERSION}"
cd "$here"
for b in "${missing[@]}"; do
  case $b in
    etcd) src=./etcd ;;
    *) src=k8s.io/kubernetes/cmd/$b ;;
  esac
  echo "Building $b ${K8S_VERSION} (etcd ${ETCD_VERSION}) into $out ..." >&2
  start=$(date +%s)
  CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out/$b.tmp" "$src"
  mv "$out/$b.tmp" "$out/$b"
  echo "Built $b in $(( $(date +%s) - start ))s" >&2
done
echo "$out"
