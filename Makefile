# Quick start (README): `make demo` and `make test`. Both build .venv from constraints.txt on first use.
# `make docs` builds the docs site into docs/_build/html (.ci/run: DOCS_OPTS="-W --keep-going", warnings are errors).
# The current stack (ESPnet's s3prl fork on current torch, README "Two stacks"): `make test-current` builds
# .venv-current from constraints-current.txt: first the ESPnet environment a user already has, then ours beside it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
EXTRAS := s3prl,augment,superb,report,dev,bench,cluster,export,docs
VENV_CURRENT := .venv-current
PY_CURRENT := $(VENV_CURRENT)/bin/python
EXTRAS_CURRENT := espnet,augment,superb,report,dev,cluster,export
PYTEST_ARGS ?=
DOCS_OPTS ?=

.PHONY: demo test docs install test-current install-current install-current-espnet clean-venv

$(VENV)/.installed: setup.cfg pyproject.toml constraints.txt build_backend/robustdistiller_build.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[$(EXTRAS)]"
	$(PY) -m pip install --quiet -c constraints.txt --no-deps catalyst
	touch $@

install: $(VENV)/.installed

# the ESPnet environment a user already has (it writes nothing into this folder: .ci/run builds it while `install` runs)
$(VENV_CURRENT)/.espnet: constraints-current.txt
	test -x $(PY_CURRENT) || $(PYTHON) -m venv $(VENV_CURRENT)
	$(PY_CURRENT) -m pip install --quiet -c constraints-current.txt torch torchaudio torchcodec espnet-s3prl espnet
	touch $@

$(VENV_CURRENT)/.installed: $(VENV_CURRENT)/.espnet setup.cfg pyproject.toml build_backend/robustdistiller_build.py
	$(PY_CURRENT) -m pip install --quiet -c constraints-current.txt -e ".[$(EXTRAS_CURRENT)]"
	touch $@

install-current-espnet: $(VENV_CURRENT)/.espnet

install-current: $(VENV_CURRENT)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/robustdistiller demo

test: $(VENV)/.installed
	$(PY) -m pytest $(PYTEST_ARGS)

# the API pages import this checkout's package (PYTHONPATH), not whichever one the venv has installed
docs: $(VENV)/.installed
	PYTHONPATH=$(CURDIR) $(PY) -m sphinx -b html $(DOCS_OPTS) docs docs/_build/html

# what the current stack runs: everything but the tests marked stock_only or one_stack (setup.cfg markers)
test-current: $(VENV_CURRENT)/.installed
	$(PY_CURRENT) -m pytest -m "not stock_only and not one_stack" $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV) $(VENV_CURRENT)
