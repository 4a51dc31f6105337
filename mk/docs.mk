# Pictures of docs/ (issue 16), made from sources kept in the repo: Graphviz dot (Debian's
# graphviz) for the diagrams, the demo's timeline and matplotlib for the formation plot.
DOT ?= dot

.PHONY: docs-pictures
docs-pictures: venv controlplane ## Render docs/images/{reconcile,deployment}.svg and the formation timeline plot (runs the demo)
	$(DOT) -Tsvg docs/diagrams/reconcile.dot -o docs/images/reconcile.svg
	$(DOT) -Tsvg docs/diagrams/deployment.dot -o docs/images/deployment.svg
	$(PY) -m clusterop_dev.demo --timeline docs/images/formation-timeline.csv
	$(PY) docs/diagrams/plot_timeline.py docs/images/formation-timeline.csv docs/images/formation-timeline.svg
