#!/usr/bin/env bash
# Make the local stand-in for debian:bookworm-slim from Debian's own packages, without a registry:
#   debootstrap --variant=minbase bookworm ROOTFS, trimmed as the official slim image is, then
#   tar -C ROOTFS -c . | docker import - BASE_IMAGE
# Skipped when BASE_IMAGE exists in the engine. The rootfs is cached outside the repo
# (~/.cache/cloudify-cluster-operator/image/) so a pruned engine re-imports without re-downloading.
# Needs root (debootstrap) and Debian's archive (http://deb.debian.org, an apt registry).
set -euo pipefail
BASE_IMAGE=${1:-${BASE_IMAGE:-cloudify-cluster-operator/debian:bookworm-slim-local}}
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
IMAGE_CACHE=${IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cloudify-cluster-operator/image}
ROOTFS=$IMAGE_CACHE/rootfs-$SUITE

if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  echo "base image $BASE_IMAGE present"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "base.sh needs debootstrap (apt-get install debootstrap)" >&2; exit 1; }
if [ ! -e "$ROOTFS/.complete" ]; then
  echo "debootstrap --variant=minbase $SUITE into $ROOTFS (about a minute) ..."
  rm -rf "$ROOTFS" && mkdir -p "$IMAGE_CACHE"
  debootstrap --variant=minbase "$SUITE" "$ROOTFS" "$MIRROR" >"$IMAGE_CACHE/debootstrap.log" 2>&1 \
    || { tail -20 "$IMAGE_CACHE/debootstrap.log" >&2; exit 1; }
  # What the official slim image does: keep docs, man pages and apt's downloads out of every later layer.
  cat >"$ROOTFS/etc/dpkg/dpkg.cfg.d/docker" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
CFG
  cat >"$ROOTFS/etc/apt/apt.conf.d/docker-clean" <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CFG
  printf 'Acquire::Languages "none";\n' >"$ROOTFS/etc/apt/apt.conf.d/docker-no-languages"
  printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
    >"$ROOTFS/etc/apt/apt.conf.d/docker-no-recommends"
  rm -f "$ROOTFS/etc/apt/sources.list"
  cat >"$ROOTFS/etc/apt/sources.list.d/debian.sources" <<CFG
Types: deb
URIs: ${MIRROR}
Suites: ${SUITE} ${SUITE}-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${MIRROR%/debian}/debian-security
Suites: ${SUITE}-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
CFG
  # Nothing of this machine goes into the image: the engine provides these files to each container.
  rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/cache/apt/archives/*.deb \
    "$ROOTFS"/var/log/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
    "$ROOTFS"/usr/share/locale/* "$ROOTFS"/tmp/* "$ROOTFS"/root/.[!.]* "$ROOTFS"/debootstrap
  find "$ROOTFS/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete  # licences stay, as in slim
  find "$ROOTFS/usr/share/doc" -mindepth 1 -type d -empty -delete
  : >"$ROOTFS/etc/resolv.conf"
  : >"$ROOTFS/etc/hostname"
  printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$ROOTFS/etc/hosts"
  touch "$ROOTFS/.complete"
fi
echo "docker import $ROOTFS -> $BASE_IMAGE"
tar -C "$ROOTFS" --exclude=./.complete --numeric-owner -c . \
  | docker import --change 'CMD ["bash"]' - "$BASE_IMAGE" >/dev/null
docker image inspect --format '{{.Id}} {{.Size}}' "$BASE_IMAGE"
