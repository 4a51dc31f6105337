#!/usr/bin/env bash
# `make e2e-kind`: the tests/e2e suite against a real cluster.
#
# Creates a kind cluster (hack/kind/cluster.yaml: Kubernetes 1.37), builds the image with docker
# and loads it into the node, deploys the simulator (deploy/simulator) and the operator
# (hack/kind: deploy/default with the dev image) in-cluster, port-forwards the simulator's
# control API, runs tests/e2e with E2E_CLUSTER=kind, dumps logs, events and status when it
# fails, and deletes the cluster (KEEP_CLUSTER=1 keeps it).
#
# Needs a Docker engine that runs --privileged containers (kind's nodes are) and a registry.
# Env: KIND (kind binary), IMAGE (cloudify-cluster-operator:dev), BASE_IMAGE, PY (python of the venv),
# KIND_CLUSTER (clusterop-e2e), ARTIFACTS (where dumps go), PYTEST_ARGS. Exit 69: no Docker
# engine, kind or kubectl (nothing was started).
set -euo pipefail
cd "$(dirname "$0")/../.."

KIND=${KIND:-kind}
IMAGE=${IMAGE:-cloudify-cluster-operator:dev}
SIM_IMAGE=cloudify-manager-sim:dev  # deploy/simulator's image (simulator/Dockerfile)
PY=${PY:-.venv/bin/python}
CLUSTER=${KIND_CLUSTER:-clusterop-e2e}
ARTIFACTS=${ARTIFACTS:-${TMPDIR:-/tmp}/clusterop-kind-artifacts}
OPERATOR_NS=cloudify-cluster-operator
SIM_NS=cloudify-manager-sim
KUBECONFIG_FILE=$(mktemp -t kind-kubeconfig.XXXXXX)
PF_LOG=$(mktemp -t kind-port-forward.XXXXXX)
pf_pid=

say() { echo "e2e-kind: $*" >&2; }

command -v docker >/dev/null 2>&1 || { say "docker is not installed"; exit 69; }
docker info >/dev/null 2>&1 || { say "no Docker engine (docker info failed)"; exit 69; }
command -v "$KIND" >/dev/null 2>&1 || [ -x "$KIND" ] || { say "kind not found at $KIND (make kind)"; exit 69; }
command -v kubectl >/dev/null 2>&1 || { say "kubectl is not installed"; exit 69; }
[ "$IMAGE" = "cloudify-cluster-operator:dev" ] || say "warning: hack/kind uses cloudify-cluster-operator:dev; IMAGE=$IMAGE is loaded but not deployed"

k() { kubectl --kubeconfig "$KUBECONFIG_FILE" "$@"; }

dump() {
  mkdir -p "$ARTIFACTS"
  say "dumping logs, events and status into $ARTIFACTS"
  k get managerclusters -A -o yaml >"$ARTIFACTS/managerclusters.yaml" 2>&1 || true
  k get events -A --sort-by=.lastTimestamp >"$ARTIFACTS/events.txt" 2>&1 || true
  k get pods -A -o wide >"$ARTIFACTS/pods.txt" 2>&1 || true
  k -n "$OPERATOR_NS" describe pods >"$ARTIFACTS/operator-pods.txt" 2>&1 || true
  k -n "$OPERATOR_NS" logs deploy/cloudify-cluster-operator --all-containers --tail=-1 >"$ARTIFACTS/operator.log" 2>&1 || true
  k -n "$OPERATOR_NS" logs deploy/cloudify-cluster-operator --previous --tail=-1 >"$ARTIFACTS/operator-previous.log" 2>&1 || true
  k -n "$SIM_NS" logs deploy/cloudify-manager-sim --tail=-1 >"$ARTIFACTS/simulator.log" 2>&1 || true
  cp "$PF_LOG" "$ARTIFACTS/port-forward.log" 2>/dev/null || true
  "$KIND" export logs "$ARTIFACTS/kind" --name "$CLUSTER" >/dev/null 2>&1 || true
  echo "--- operator log (tail) ---" >&2; tail -n 60 "$ARTIFACTS/operator.log" >&2 || true
  echo "--- ManagerClusters ---" >&2; k get managerclusters -A -o wide >&2 || true
}

cleanup() {
  rc=$?
  [ -n "$pf_pid" ] && kill "$pf_pid" 2>/dev/null || true
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 69 ]; then dump; fi
  if [ "${KEEP_CLUSTER:-0}" = 1 ]; then
    say "kept cluster $CLUSTER (kubeconfig: $KUBECONFIG_FILE)"
  else
    "$KIND" delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
    rm -f "$KUBECONFIG_FILE"
  fi
  rm -f "$PF_LOG"
  exit "$rc"
}
trap cleanup EXIT

say "creating kind cluster $CLUSTER"
"$KIND" delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
"$KIND" create cluster --name "$CLUSTER" --config hack/kind/cluster.yaml --wait 180s --kubeconfig "$KUBECONFIG_FILE"

say "building $IMAGE and $SIM_IMAGE and loading them into the node"
# Where kind runs there is a registry: the Dockerfile's own base (debian:bookworm-slim) and PyPI.
# BASE_IMAGE overrides the base (e.g. a mirror, or a digest-pinned one).
docker build ${BASE_IMAGE:+--build-arg "BASE_IMAGE=$BASE_IMAGE"} -t "$IMAGE" .
docker build ${BASE_IMAGE:+--build-arg "BASE_IMAGE=$BASE_IMAGE"} -t "$SIM_IMAGE" simulator
"$KIND" load docker-image "$IMAGE" "$SIM_IMAGE" --name "$CLUSTER"

say "deploying the operator (hack/kind) and the simulator (deploy/simulator)"
k apply --server-side -k hack/kind
k wait --for=condition=Established crd/managerclusters.cloudify.co --timeout=60s
k create namespace "$SIM_NS" --dry-run=client -o yaml | k apply -f -
k -n "$SIM_NS" apply --server-side -k deploy/simulator
k -n "$SIM_NS" rollout status deploy/cloudify-manager-sim --timeout=180s
k -n "$OPERATOR_NS" rollout status deploy/cloudify-cluster-operator --timeout=180s

say "port-forwarding the simulator's control API"
port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
k -n "$SIM_NS" port-forward svc/cloudify-manager-sim "$port:8100" >"$PF_LOG" 2>&1 &
pf_pid=$!
for _ in $(seq 1 60); do
  curl -fsS "http://127.0.0.1:$port/control/health" >/dev/null 2>&1 && break
  sleep 1
done
curl -fsS "http://127.0.0.1:$port/control/health" >/dev/null

say "running tests/e2e against the cluster"
E2E_CLUSTER=kind \
KUBECONFIG="$KUBECONFIG_FILE" \
E2E_SIM_CONTROL="http://127.0.0.1:$port/control" \
E2E_OPERATOR_NAMESPACE="$OPERATOR_NS" \
  "$PY" -m pytest tests/e2e -m e2e -p no:cacheprovider ${PYTEST_ARGS:-}
