# Set-up is idempotent: the venv is (re)installed only when a pyproject or the constraints change.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
CODI := $(VENV)/bin/codi
STAMP := $(VENV)/.codi-installed
PLUGINS := plugins/codi-image plugins/codi-video plugins/codi-audio plugins/codi-text
PIP_FLAGS := -q --disable-pip-version-check -c constraints.txt

.PHONY: setup demo test docs bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt .ci/apt-packages.txt .ci/pip-no-deps.txt $(addsuffix /pyproject.toml,$(PLUGINS))
	bash .ci/system-deps
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install $(PIP_FLAGS) torch==2.13.0
	$(PIP) install $(PIP_FLAGS) -e ".[dev,docs,studio]" $(addprefix -e ,$(PLUGINS))
	$(PIP) install $(PIP_FLAGS) --no-deps -r .ci/pip-no-deps.txt
	touch $(STAMP)

demo: setup
	$(CODI) plugins
	$(PY) -m codi_sdk.demo

test: setup
	$(PY) -m pytest -q

docs: setup
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

bench: setup
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) site .pytest_cache

# The plugin-author tutorial end to end in a fresh venv (docs/tutorial/run_tutorial.sh).
TUTORIAL_BASE ?= shipped
.PHONY: tutorial
tutorial:
	bash docs/tutorial/run_tutorial.sh $(TUTORIAL_BASE)
