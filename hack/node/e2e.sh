#!/usr/bin/env bash
# `make e2e-node`: tests/e2e (E2E_CLUSTER=node, the suite's in-cluster mode, with tests/e2e/node) against
# the operator and the simulator running as pods on the local node (make cluster-up); with
# NODE_SUITES="e2e argocd" (make test) then tests/argocd on the same node, where Argo CD syncs the
# operator's Deployment from git; NODE_SUITES=argocd (make e2e-argocd) runs that suite alone.
#
# Starts the cluster unless one runs (and then stops it again), builds the image (make image)
# unless docker has it, loads it into the node, deploys the operator (hack/kind: deploy/default
# with the dev image, the suite's pace; for tests/e2e only) and the simulator (deploy/simulator),
# port-forwards the simulator's control API, runs the tests, dumps logs when they fail, and after
# cluster-down checks that the host is as it was found (ip netns, links, mounts, cgroups, kubelet's paths).
#
# Env: PY (python of the venv), IMAGE (cloudify-cluster-operator:dev), ARTIFACTS, PYTEST_ARGS,
# NODE_SUITES ("e2e" by default; "e2e argocd", "argocd"), KEEP_CLUSTER=1 (leave a cluster this
# script started running). When this machine cannot run a node (not root, no docker engine, no
# unshare/nsenter/ip) it says so in one line: tests/e2e is then skipped (exit 0) and tests/argocd
# runs on the plain local control plane with the operator as a host process.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
IMAGE=${IMAGE:-cloudify-cluster-operator:dev}
ARTIFACTS=${ARTIFACTS:-${TMPDIR:-/tmp}/clusterop-node-artifacts}
OPERATOR_NS=cloudify-cluster-operator
SIM_NS=cloudify-manager-sim
export KUBECONFIG=$PWD/.testbed/kubeconfig
SUITES=" ${NODE_SUITES:-e2e} "
say() { echo "e2e-node: $*" >&2; }
suite() { [[ "$SUITES" == *" $1 "* ]]; }
node() { "$PY" -m clusterop_dev.node "$@" --dir .testbed; }

cannot=""
[ "$(id -u)" = 0 ] || cannot="not root (the node needs namespaces, mounts and cgroups)"
for tool in docker ctr containerd runc ip nsenter unshare nft kubectl; do
  command -v "$tool" >/dev/null 2>&1 || cannot=${cannot:-"no $tool"}
done
[ -n "$cannot" ] || docker info >/dev/null 2>&1 || cannot="no docker engine (docker info failed)"
if [ -n "$cannot" ]; then
  suite e2e && say "SKIPPED: this machine cannot run a node: $cannot"
  # tests/argocd falls back to the local control plane, the operator as a host process (its header says so).
  # shellcheck disable=SC2086
  if suite argocd; then ARGOCD_NO_NODE="$cannot" exec "$PY" -m pytest tests/argocd -m argocd -p no:cacheprovider ${PYTEST_ARGS:-}; fi
  exit 0
fi

pf_pid=
started=0
before=$(mktemp -t node-host-before.XXXXXX)
after=$(mktemp -t node-host-after.XXXXXX)

dump() {
  mkdir -p "$ARTIFACTS"
  say "dumping logs, events and status into $ARTIFACTS"
  kubectl get managerclusters -A -o yaml >"$ARTIFACTS/managerclusters.yaml" 2>&1 || true
  kubectl get events -A --sort-by=.lastTimestamp >"$ARTIFACTS/events.txt" 2>&1 || true
  kubectl get pods -A -o wide >"$ARTIFACTS/pods.txt" 2>&1 || true
  kubectl -n "$OPERATOR_NS" describe pods >"$ARTIFACTS/operator-pods.txt" 2>&1 || true
  kubectl -n "$OPERATOR_NS" logs deploy/cloudify-cluster-operator --tail=-1 >"$ARTIFACTS/operator.log" 2>&1 || true
  kubectl -n "$SIM_NS" logs deploy/cloudify-manager-sim --tail=-1 >"$ARTIFACTS/simulator.log" 2>&1 || true
  cp .testbed/run/*.log "$ARTIFACTS/" 2>/dev/null || true
  echo "--- operator log (tail) ---" >&2; tail -n 40 "$ARTIFACTS/operator.log" >&2 || true
}

cleanup() {
  rc=$?
  [ -n "$pf_pid" ] && kill "$pf_pid" 2>/dev/null || true
  [ "$rc" -ne 0 ] && dump
  if [ "$started" = 1 ] && [ "${KEEP_CLUSTER:-0}" != 1 ]; then
    node down || rc=1
    "$PY" -m clusterop_dev.node snapshot --dir .testbed >"$after"
    if ! diff -u "$before" "$after" >&2; then say "FAILED: cluster-down left the host changed (diff above)"; rc=1; fi
  fi
  rm -f "$before" "$after"
  exit "$rc"
}
trap cleanup EXIT

if ! node status >/dev/null 2>&1; then
  if ip netns list 2>/dev/null | grep -qE '^clusterop-(cp|node)\b'; then
    # Another checkout's node runs on this host (the namespace names are fixed): leave it alone;
    # a cleanup from here would remove its namespaces.
    say "FAILED: another local node runs here (ip netns clusterop-cp/clusterop-node exist); stop it first (make cluster-down in its checkout)"
    exit 1
  fi
  "$PY" -m clusterop_dev.node snapshot --dir .testbed >"$before"
  started=1
  node up >/dev/null
fi
# Always through make image: docker's layer cache makes it about a second when nothing changed, and a
# stale image would test yesterday's operator. make image and make sim-image (the simulator's own
# image, deploy/simulator) load them into the running node themselves.
make --no-print-directory image sim-image IMAGE="$IMAGE"

if suite e2e; then
  say "deploying the operator (hack/kind overlay of deploy/default) and the simulator (deploy/simulator)"
  kubectl apply --server-side -k hack/kind >/dev/null
  kubectl wait --for=condition=Established crd/managerclusters.cloudify.co --timeout=60s >/dev/null
else
  say "deploying the simulator (deploy/simulator); Argo CD syncs the operator"
fi
kubectl create namespace "$SIM_NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl -n "$SIM_NS" apply --server-side -k deploy/simulator >/dev/null
kubectl -n "$SIM_NS" rollout status deploy/cloudify-manager-sim --timeout=180s
suite e2e && kubectl -n "$OPERATOR_NS" rollout status deploy/cloudify-cluster-operator --timeout=180s

port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
kubectl -n "$SIM_NS" port-forward svc/cloudify-manager-sim "$port:8100" >/dev/null 2>&1 &
pf_pid=$!
for _ in $(seq 1 60); do curl -fsS "http://127.0.0.1:$port/control/health" >/dev/null 2>&1 && break; sleep 0.5; done
curl -fsS "http://127.0.0.1:$port/control/health" >/dev/null

export E2E_CLUSTER=node E2E_SIM_CONTROL="http://127.0.0.1:$port/control" E2E_SIM_NAMESPACE="$SIM_NS" \
  E2E_OPERATOR_NAMESPACE="$OPERATOR_NS" E2E_IMAGE="$IMAGE"
failed=0
if suite e2e; then
  say "running tests/e2e (with tests/e2e/node) against the node"
  # shellcheck disable=SC2086
  "$PY" -m pytest tests/e2e -p no:cacheprovider ${PYTEST_ARGS:-} || failed=1
fi
if suite argocd; then
  if suite e2e; then
    dump_to=$ARTIFACTS; ARTIFACTS=$ARTIFACTS/e2e; [ "$failed" = 1 ] && dump; ARTIFACTS=$dump_to
    # One operator per cluster: hack/kind's (all namespaces) would act on Argo CD's ManagerCluster too.
    say "removing hack/kind's operator Deployment: tests/argocd has Argo CD sync its own"
    kubectl -n "$OPERATOR_NS" delete deploy/cloudify-cluster-operator --cascade=foreground --timeout=120s >/dev/null
    for _ in $(seq 1 120); do
      [ -z "$(kubectl -n "$OPERATOR_NS" get pods -l app.kubernetes.io/name=cloudify-cluster-operator -o name)" ] && break
      sleep 1
    done
  fi
  say "running tests/argocd against the node: Argo CD syncs the operator as pods"
  # shellcheck disable=SC2086
  "$PY" -m pytest tests/argocd -m argocd -p no:cacheprovider ${PYTEST_ARGS:-} || failed=1
fi
exit "$failed"
