# Two commands for a fresh machine (see README): `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# The CPU build of PyTorch; an unpinned `torch` would pull the multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo test lint bundle clean

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q $(TORCH_SPEC)
	$(PIP) install -q -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(PY) examples/demo.py

test: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -n 2 -q

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

# Rebuild the bundled feeders from the reference OpenDSS models in ../shared (maintainers only).
bundle: $(VENV)/.installed
	$(PY) scripts/build_bundled_feeders.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
