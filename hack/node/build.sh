#!/usr/bin/env bash
# Builds (or reuses) everything the local node runs, into caches outside the repository:
#   kubelet, kube-scheduler, kube-proxy   hack/controlplane/build.sh (the control plane's module)
#   coredns, pause                        hack/coredns, hack/node/pause (static Go binaries)
#   their images                          FROM scratch, built with docker (no registry needed)
#   CNI plugins                           Debian's package, apt-get download + dpkg -x
# Prints the node cache folder on stdout; progress goes to stderr. Each part is skipped when present.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"
say() { echo "node-build: $*" >&2; }

"$here/../controlplane/build.sh" kubelet kube-scheduler kube-proxy >/dev/null
cache="${XDG_CACHE_HOME:-$HOME/.cache}/cloudify-cluster-operator/node"
mkdir -p "$cache"

gobuild() {  # gobuild NAME MODULE_DIR
  local name=$1 dir=$2 start
  [ -x "$cache/$name" ] && return 0
  say "building $name"
  start=$(date +%s)
  (cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$cache/$name.tmp" .)
  mv "$cache/$name.tmp" "$cache/$name"
  say "built $name in $(( $(date +%s) - start ))s"
}
gobuild "coredns-$COREDNS_VERSION" "$here/../coredns"
gobuild pause "$here/pause"

image() {  # image TAG DOCKERFILE BINARY NAME_IN_IMAGE
  local tag=$1 dockerfile=$2 binary=$3 name=$4 ctx
  docker image inspect "$tag" >/dev/null 2>&1 && return 0
  say "building image $tag"
  ctx=$(mktemp -d)
  cp "$binary" "$ctx/$name"
  docker build -q -t "$tag" -f "$dockerfile" "$ctx" >"$ctx.log" 2>&1 || { cat "$ctx.log" >&2; exit 1; }
  rm -f "$ctx.log"
  rm -rf "$ctx"
}
image "$COREDNS_IMAGE" "$here/images/coredns.Dockerfile" "$cache/coredns-$COREDNS_VERSION" coredns
image "$PAUSE_IMAGE" "$here/images/pause.Dockerfile" "$cache/pause" pause

if [ ! -x "$cache/cni/bin/bridge" ]; then
  say "fetching Debian's $CNI_PACKAGE"
  tmp=$(mktemp -d)
  (cd "$tmp" && { apt-get download -q "$CNI_PACKAGE" || { apt-get update -qq && apt-get download -q "$CNI_PACKAGE"; }; } >&2)
  dpkg -x "$tmp"/*.deb "$tmp/root"
  rm -rf "$cache/cni" && mkdir -p "$cache/cni"
  mv "$tmp/root/usr/lib/cni" "$cache/cni/bin"
  rm -rf "$tmp"
fi
echo "$cache"
