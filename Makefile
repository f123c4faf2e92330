# The two entry points a newcomer needs (see README.md): `make demo` and `make test`.
# Each sets up everything it needs itself on a fresh Debian machine, as root
# (./run installs make itself first; see README.md).

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint typecheck unit bench clean

setup: $(STAMP)

# System packages: only those missing (apt-get update + install), see scripts/bootstrap.sh.
.apt-done: scripts/bootstrap.sh
	@bash scripts/bootstrap.sh
	@touch $@

$(STAMP): pyproject.toml .apt-done
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

# The store on one machine: embedded broker, HQ ingest, the daemon on simulated devices, and
# the cashier's terminal in front (provisioning/demo.py; scripted when there is no terminal).
demo: setup
	@$(PY) -m provisioning.demo

# The two command lines step by step (edge-hq and edge, no daemon): scripts/tour.sh.
.PHONY: tour
tour: setup
	@bash scripts/tour.sh

# The daemon on simulated devices: a pty scanner (echo CODE > demo-home/sim/run/scanner),
# a file printer; the demo home and sample codes (samples.txt) are created on first run.
.PHONY: simulate
simulate: setup
	$(VENV)/bin/edge --home demo-home/sim run --simulate

lint: setup
	$(VENV)/bin/ruff check .

typecheck: setup
	$(VENV)/bin/mypy edge edged drivers sync ui hq provisioning cli

unit: setup
	$(VENV)/bin/pytest -q

# Everything CI runs: lint, types, the whole suite. pytest's "no tests ran" (exit 5) fails too.
test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache --no-logo
	$(VENV)/bin/mypy edge edged drivers sync ui hq provisioning cli
	$(VENV)/bin/pytest -q -p no:cacheprovider

# Coverage-guided fuzzing (atheris) of every parser, longer than the test suite's few seconds
# each; findings land in tests/fuzz/crashes/TARGET/ and are replayed by tests/test_fuzz.py.
FUZZ_SECONDS ?= 300
.PHONY: fuzz
fuzz: setup
	@for t in codes envelope config_body batch; do \
	  echo "== fuzz $$t ($(FUZZ_SECONDS) s)"; \
	  $(PY) -m tests.fuzz.run $$t --seconds $(FUZZ_SECONDS) || exit 1; done

# The fault suite at its long size (storms through the real daemon, a faulty network, fuzzing
# for minutes per parser), then a table of what it proved; its short form runs in make test.
.PHONY: proof
proof: setup
	$(PY) scripts/proof.py

bench: setup
	$(PY) bench/signing.py
	$(PY) bench/redeem_latency.py
	$(PY) bench/daemon.py
	$(PY) bench/printer.py
	$(PY) bench/sync_drain.py
	$(PY) bench/hq_ingest.py
	$(PY) bench/camera.py
	$(PY) bench/ui.py

clean:
	rm -rf $(VENV) .apt-done build *.egg-info
