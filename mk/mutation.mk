# Mutation testing of the pure core (planner, model, status) with the unit tests; slow, not in `make test`.
.PHONY: mutation
mutation: venv ## mutmut on planner.py, model.py, status.py with tests/unit; prints the score (about 10 min)
	@VENV=$(VENV) hack/mutation/run.sh
