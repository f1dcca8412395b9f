# The two commands a new user needs: `make run` and `make test`. Both create .venv from
# requirements.lock first (seconds when nothing changed).
CONFIG ?= pipeline/configs/taxi.yaml
VENV := .venv
PY := $(VENV)/bin/python
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2
export PYTHONUNBUFFERED := 1

.PHONY: venv run test test-fast lint lock clean bench bench-quick serve digits

venv:
	@bash scripts/bootstrap.sh

run: venv  ## Run the whole pipeline locally and push a model to outputs/serving/
	$(VENV)/bin/headwise run --config $(CONFIG)

digits: venv  ## The image example: write scikit-learn's digits as PNGs + labels, run its pipeline
	$(VENV)/bin/headwise data digits
	$(VENV)/bin/headwise run --config pipeline/configs/digits.yaml

test: venv  ## Lint, unit tests, then the end-to-end pipeline tests (README, Tests: how long)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -v -n 2 --dist loadscope --no-loadscope-reorder --durations=30

test-fast: venv  ## Unit tests only, no pipeline run
	$(PY) -m pytest -v -n 2 --dist loadscope -m "not e2e"

serve: venv  ## Serve the pushed model over TF Serving's gRPC API on 127.0.0.1:8500, logging requests
	$(VENV)/bin/headwise serve --model-dir outputs/serving/taxi --request-log-dir outputs/request_logs/taxi

bench: venv  ## Every benchmark; results in benchmarks/results/ (docs/benchmarks.md)
	$(VENV)/bin/headwise bench

bench-quick: venv  ## The benchmarks as a smoke check (minutes)
	$(VENV)/bin/headwise bench --quick

lint: venv
	$(VENV)/bin/ruff check .

lock:  ## Re-resolve requirements.lock after editing requirements.in
	uv pip compile --python-version 3.10 requirements.in -o requirements.lock

clean:
	rm -rf outputs
