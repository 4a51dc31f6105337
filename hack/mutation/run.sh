#!/usr/bin/env bash
# make mutation: mutmut on planner.py, model.py and status.py with the unit tests, in a scratch
# copy outside the repo (mutmut writes mutants/ beside the sources). Prints the score.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
venv=${VENV:-$repo/.venv}
[[ $venv = /* ]] || venv=$repo/$venv
work=${MUTATION_DIR:-$HOME/.cache/cloudify-cluster-operator/mutation}
rm -rf "$work"
mkdir -p "$work/src" "$work/tests"
cp -r "$repo/operator/clusterop" "$work/src/clusterop"
cp -r "$repo/tests/unit" "$work/tests/unit"
cp -r "$repo/crds" "$work/crds"  # tests/unit/test_crd_words.py reads the CRD
cp "$repo/hack/mutation/pyproject.toml" "$work/pyproject.toml"
find "$work" -name __pycache__ -prune -exec rm -rf {} +
cd "$work"
"$venv/bin/mutmut" run --max-children "${MUTATION_JOBS:-2}" >"$work/run.log" 2>&1 || { tail -40 "$work/run.log"; exit 1; }
"$venv/bin/mutmut" results --all true >"$work/results.txt"
# Score: killed / all mutants; "no tests" (code no unit test runs) and timeouts count as not killed.
awk -F': ' 'NF == 2 { n[$2]++; all++ }
    END {
        for (s in n) printf "  %-10s %d\n", s, n[s]
        printf "mutation score: %d killed of %d mutants = %.1f%%\n", n["killed"], all, 100 * n["killed"] / all
    }' "$work/results.txt"
echo "survivors: grep -v killed $work/results.txt; one diff: (cd $work && $venv/bin/mutmut show NAME)"
