# Two commands for a fresh machine (see README): `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# The CPU build of PyTorch; an unpinned `torch` would pull the multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
# Exact versions of every package the suite was verified with (refresh: `make lock`).
LOCK   ?= constraints.txt

.PHONY: demo test lint docs lock bundle clean

$(VENV)/.installed: pyproject.toml Makefile $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c $(LOCK) $(TORCH_SPEC)
	$(PIP) install -q -c $(LOCK) -e '.[test,rl,export]'
	touch $@

# The main job: a short GradMAP training on ieee13-50 (a few minutes on 2 cores); it writes
# eval.json and the plots into a new run directory and prints where they are.
demo: $(VENV)/.installed
	$(VENV)/bin/gradmap-train --config ieee13-50 --out runs/demo-$$(date +%Y%m%d-%H%M%S)

test: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	PY=$(PY) PYTHON=$(PYTHON) LOCK=$(LOCK) TORCH_SPEC=$(TORCH_SPEC) bash scripts/check_wheel.sh
	d=$$(mktemp -d) && NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict -q -d $$d; rc=$$?; rm -rf $$d; exit $$rc
	$(PY) -m pytest -n 2 -q

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

# The documentation site (MkDocs + Material, API reference by mkdocstrings) into site/; warnings
# fail the build. `make test` runs the same strict build into a temporary directory.
docs: $(VENV)/.installed
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict -d site

# Refresh the lock: the newest versions pyproject.toml's ranges admit today, resolved in a fresh
# venv. Run `make test` afterwards and commit constraints.txt only if it passes.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install -q $(TORCH_SPEC)
	.lock-venv/bin/python -m pip install -q -e '.[test,rl,export]'
	{ echo "# Exact versions \`make demo\` and \`make test\` install (pip -c); made by \`make lock\`."; \
	  echo "# Verified with the whole test suite on x86-64 Linux, Python 3.11, torch CPU build."; \
	  .lock-venv/bin/python -m pip freeze --exclude-editable | sed 's/+cpu$$//'; } > $(LOCK)
	rm -rf .lock-venv

# Rebuild the bundled feeders from the reference OpenDSS models in ../shared (maintainers only).
bundle: $(VENV)/.installed
	$(PY) scripts/build_bundled_feeders.py

clean:
	rm -rf $(VENV) .lock-venv .pytest_cache build site *.egg-info
