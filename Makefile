# driftscope — the two commands the README names are `make demo` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
STACK  := deploy/local/stack
PYTEST_ARGS ?=

.PHONY: venv demo test test-unit check audit browser stack-up stack-down stack-status bench clean

$(STAMP): pyproject.toml setup.py
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11+" >&2; exit 2; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[attribution,embedder-export,faiss,dev]'
	touch $(STAMP)

venv: $(STAMP)

## The demo: embedded mode, no services.
demo: $(STAMP)
	$(VENV)/bin/driftscope demo --out demo-out

## The whole suite against the real stack: install, stack up, pytest, stack down.
test: $(STAMP) browser
	$(STACK) up
	status=0; $(PY) -m pytest $(PYTEST_ARGS) || status=$$?; $(STACK) down; exit $$status

## Headless Chromium (Debian) for the HTML report test.
browser:
	@command -v chromium >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

test-unit: $(STAMP)
	$(PY) -m pytest -m "not integration" $(PYTEST_ARGS)

check: $(STAMP)
	$(VENV)/bin/ruff check .
	@mkdir -p .typecheck/driftscope_llm
	@ln -sfn ../../services .typecheck/driftscope_llm/services
	@ln -sfn ../../attribution .typecheck/driftscope_llm/attribution
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-logo --no-cache  # layers of docs/architecture.md

## Known vulnerabilities in the installed dependencies. --strict: a package that could not be
## audited is a failure, not a pass. Needs a route to PyPI's per-version JSON API or to OSV.
audit: $(STAMP)
	$(VENV)/bin/pip-audit --strict --progress-spinner off

stack-up:
	$(STACK) up
stack-down:
	$(STACK) down
stack-status:
	$(STACK) status

clean:
	rm -rf $(VENV) demo-out .mypy_cache .ruff_cache .pytest_cache
