# Two entry points do all set-up on a fresh Debian 12 machine (root, Python 3.11, Go):
#   make demo   - the demo upgrade on the labs
#   make test   - every check: formatter, linter, type checker, import layers, then all tests
# Everything expensive is cached by version: the venv by requirements.lock, the Kubernetes lab
# binaries by their versions (~/.cache/stackhop-lab/), the OpenStack venvs by their lock files.
# `make test` times its phases (.ci/timed); the test session ends with that table and the slowest
# tests, so every CI log shows where the time goes.
PY ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed-$(shell sha256sum requirements.lock pyproject.toml 2>/dev/null | sha256sum | cut -c1-12)
TIMINGS := .lab/timings.tsv
TIMED := ./.ci/timed $(TIMINGS)
export STACKHOP_TIMINGS := $(abspath $(TIMINGS))
# Bytecode caches are written (into the venv and the checkout's __pycache__, both ignored by git) even
# where the environment says otherwise: without them every Python process compiles what it imports
# (the worker and CLI start in 1.2 s instead of 0.6 s) and Temporal's workflow sandbox recompiles the
# workflow modules for every new workflow run.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: test demo setup venv labs check lint format clean timings-reset
# The tests in three processes at once (.ci/pytest-groups): the cloud lab's Kubernetes part and its
# direct part beside the rest; most of the cloud's time is waiting on OpenStack processes to start.
test: timings-reset setup check
	./.ci/pytest-groups $(VENV) $(PYTEST_ARGS)

demo: setup
	$(VENV)/bin/stackhop demo $(DEMO_ARGS)

setup: venv labs

venv: $(STAMP)
# The project installed editable (the product: what the wheel holds), plus the checkout itself on the
# venv's path (a .pth file): the lab (`stackhop demo`, `stackhop lab`), tests and bench are not in the wheel.
$(STAMP): requirements.lock pyproject.toml
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(TIMED) "set-up: venv (uv install from requirements.lock)" sh -c '\
	  $(VENV)/bin/python -m pip install -q uv==0.13.8 && \
	  $(VENV)/bin/uv pip install -q --python $(VENV)/bin/python -r requirements.lock && \
	  $(VENV)/bin/uv pip install -q --python $(VENV)/bin/python --no-deps -e .'
	echo "$(CURDIR)" > "$$($(VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/stackhop-checkout.pth"
	rm -f $(VENV)/.installed-* && touch $@

labs: venv
	$(TIMED) "set-up: OpenStack labs (MariaDB, RabbitMQ, release venvs)" $(VENV)/bin/python -m lab.openstack.install
	$(TIMED) "set-up: Kubernetes lab binaries and helm" $(VENV)/bin/python -m lab.k8s.build

# Static checks, zero findings: the formatter owns the layout, then lint, types, import layers.
check: venv
	$(TIMED) "check: ruff format --check" $(VENV)/bin/ruff format --check --quiet .
	$(TIMED) "check: ruff check" $(VENV)/bin/ruff check --quiet .
	$(TIMED) "check: mypy" $(VENV)/bin/mypy
	$(TIMED) "check: import-linter" $(VENV)/bin/lint-imports --no-cache

lint: check

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

timings-reset:
	@mkdir -p $(dir $(TIMINGS)) && : >$(TIMINGS)

clean:
	rm -rf $(VENV) .lab .mypy_cache .ruff_cache
