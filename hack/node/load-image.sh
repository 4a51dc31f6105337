#!/usr/bin/env bash
# load-image.sh IMAGE...: copy docker images into the local node's containerd (make image calls
# it). Does nothing, exit 0, when no node runs (no .testbed/run/node/containerd.sock).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
sock=${TESTBED_DIR:-.testbed}/run/node/containerd.sock
[ -S "$sock" ] || { echo "load-image: no node runs (no $sock): nothing loaded" >&2; exit 0; }
exec "$PY" -m clusterop_dev.node load-image --dir "${TESTBED_DIR:-.testbed}" "$@"
