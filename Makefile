# Two entry points do all set-up on a fresh Debian 12 machine (root, Python 3.11, Go):
#   make demo   - the demo upgrade on the labs
#   make test   - the whole test suite
# Everything expensive is cached by version: the venv by requirements.lock, the Kubernetes lab
# binaries by their versions (~/.cache/stackhop-lab/), the OpenStack venvs by their lock files.
PY ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed-$(shell sha256sum requirements.lock pyproject.toml 2>/dev/null | sha256sum | cut -c1-12)

.PHONY: test demo setup venv labs lint clean
test: setup
	$(VENV)/bin/lint-imports
	$(VENV)/bin/pytest $(PYTEST_ARGS)

demo: setup
	$(VENV)/bin/stackhop demo $(DEMO_ARGS)

setup: venv labs

venv: $(STAMP)
# The project installed editable (the product: what the wheel holds), plus the checkout itself on the
# venv's path (a .pth file): the lab (`stackhop demo`, `stackhop lab`), tests and bench are not in the wheel.
$(STAMP): requirements.lock pyproject.toml
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q uv==0.13.8
	$(VENV)/bin/uv pip install -q --python $(VENV)/bin/python -r requirements.lock
	$(VENV)/bin/uv pip install -q --python $(VENV)/bin/python --no-deps -e .
	echo "$(CURDIR)" > "$$($(VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/stackhop-checkout.pth"
	rm -f $(VENV)/.installed-* && touch $@

labs: venv
	$(VENV)/bin/python -m lab.openstack.install
	$(VENV)/bin/python -m lab.k8s.build

lint: venv
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) .lab
