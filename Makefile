# Quick start (README): `make demo` and `make test`. Both build .venv from constraints.txt on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
EXTRAS := s3prl,augment,superb,report,dev
PYTEST_ARGS ?=

.PHONY: demo test install clean-venv

$(VENV)/.installed: setup.cfg pyproject.toml constraints.txt build_backend/robustdistiller_build.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[$(EXTRAS)]"
	$(PY) -m pip install --quiet -c constraints.txt --no-deps catalyst
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/robustdistiller demo

test: $(VENV)/.installed
	$(PY) -m pytest $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)
