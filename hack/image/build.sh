#!/usr/bin/env bash
# `make image` / `make sim-image`: build the operator's image (DIST=operator: the repo's Dockerfile)
# or the simulator's (DIST=simulator: simulator/Dockerfile) with no registry.
#   1. the base: hack/image/base.sh makes BASE_IMAGE from Debian's packages (skipped when present);
#      BASE_IMAGE=debian:bookworm-slim (or any other) uses that image as it is instead;
#   2. the wheels: pip on the host downloads every dependency as a wheel for CPython 3.11 on this
#      architecture (the host trusts this machine's CA; the image never sees it), cached per
#      list of requirements under ~/.cache/cloudify-cluster-operator/image/;
#   3. docker build with a build context streamed from the distribution's folder: its Dockerfile,
#      .dockerignore, pyproject.toml, README.md, its package folder and that wheels/ folder (so pip
#      in the build is offline). Each image holds its own distribution alone.
# Usage: hack/image/build.sh [IMAGE]   Env: DIST (operator, the default, or simulator), BASE_IMAGE,
# LOCAL_BASE, PY (a python with pip), IMAGE_CACHE, DOCKER_BUILD_ARGS.
# Exit 69: no Docker engine (nothing was built).
set -euo pipefail
cd "$(dirname "$0")/../.."
DIST=${DIST:-operator}
case $DIST in
  operator) SRC=. PKG=operator DEFAULT_IMAGE=cloudify-cluster-operator:dev ;;
  simulator) SRC=simulator PKG=cloudify_manager_sim DEFAULT_IMAGE=cloudify-manager-sim:dev ;;
  *) echo "image: DIST=$DIST: operator or simulator" >&2; exit 2 ;;
esac
IMAGE=${1:-${IMAGE:-$DEFAULT_IMAGE}}
LOCAL_BASE=${LOCAL_BASE:-cloudify-cluster-operator/debian:bookworm-slim-local}
BASE_IMAGE=${BASE_IMAGE:-$LOCAL_BASE}
IMAGE_CACHE=${IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cloudify-cluster-operator/image}
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
say() { echo "image: $*" >&2; }

docker info >/dev/null 2>&1 || { say "no Docker engine (docker info failed)"; exit 69; }
[ "$BASE_IMAGE" != "$LOCAL_BASE" ] || IMAGE_CACHE=$IMAGE_CACHE hack/image/base.sh "$BASE_IMAGE"

# What pip installs in the image: the distribution's build requirements and dependencies.
mapfile -t deps < <(PYPROJECT="$SRC/pyproject.toml" "$PY" - <<'PYEOF'
import os
import tomllib
with open(os.environ["PYPROJECT"], "rb") as f:
    project = tomllib.load(f)
print("\n".join(project["build-system"]["requires"] + project["project"]["dependencies"]))
PYEOF
)
[ "${#deps[@]}" -gt 0 ] || { say "no requirements read from $SRC/pyproject.toml"; exit 1; }
# One wheelhouse per list of requirements and architecture: a warm build asks no index at all.
key=$(printf '%s\n' "$(uname -m)" "${deps[@]}" | sha256sum | cut -c1-16)
house=$IMAGE_CACHE/wheels-$key
if [ ! -e "$house/.complete" ]; then
  say "downloading wheels for cp311-$(uname -m) into $house"
  rm -rf "$house" && mkdir -p "$house/wheels"
  arch=$(uname -m)
  platforms=()
  for v in 36 35 34 28 27 17; do platforms+=(--platform "manylinux_2_${v}_${arch}"); done
  PIP_FIND_LINKS= "$PY" -m pip download -q --disable-pip-version-check --only-binary=:all: \
    --implementation cp --python-version 3.11 --abi cp311 --abi abi3 --abi none "${platforms[@]}" \
    -d "$house/wheels" "${deps[@]}"
  touch "$house/.complete"
fi

say "docker build $IMAGE (base $BASE_IMAGE)"
# shellcheck disable=SC2086
tar -c --exclude=__pycache__ --exclude='*.egg-info' -C "$SRC" \
    Dockerfile .dockerignore pyproject.toml README.md "$PKG" -C "$house" wheels \
  | docker build --network host --build-arg "BASE_IMAGE=$BASE_IMAGE" ${DOCKER_BUILD_ARGS:-} -t "$IMAGE" -
docker image inspect --format "image: $IMAGE {{.Id}} {{.Size}} bytes" "$IMAGE"
