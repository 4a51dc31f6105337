#!/usr/bin/env bash
# Build the krew archive of `kubectl mgrc`: one executable zipapp (the plugin, its part of the
# clusterop package, pykube-ng, requests, PyYAML; runs on any python3 >= 3.11) plus the LICENSE
# text, as dist/kubectl-mgrc.tar.gz; then print its sha256 for deploy/krew/mgrc.yaml.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python3}
out=dist/kubectl-mgrc
rm -rf "$out" && mkdir -p "$out/app/clusterop"
"$PY" -m pip install -q --no-compile --target "$out/app" pykube-ng==23.6.0 requests==2.34.2 PyYAML
cp operator/clusterop/__init__.py operator/clusterop/model.py operator/clusterop/errors.py "$out/app/clusterop/"
cp -r operator/clusterop/plugin "$out/app/clusterop/plugin"
find "$out/app" -name __pycache__ -prune -exec rm -rf {} +
printf 'import sys\n\nfrom clusterop.plugin.cli import main\n\nsys.exit(main())\n' > "$out/app/__main__.py"
"$PY" -m zipapp "$out/app" -p '/usr/bin/env python3' -o "$out/kubectl-mgrc"
cat > "$out/LICENSE" <<'TXT'
Apache License 2.0: https://www.apache.org/licenses/LICENSE-2.0
TXT
tar -C "$out" -czf dist/kubectl-mgrc.tar.gz kubectl-mgrc LICENSE
sha256sum dist/kubectl-mgrc.tar.gz
