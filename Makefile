# driftscope — the two commands the README names are `make demo` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
STACK  := deploy/local/stack
PYTEST_ARGS ?=
# The demo's own virtualenv: the runtime and the `demo` extra only (no test tools, nothing built
# from source: --only-binary), so `make test`'s dev install is untouched. torch comes as the CPU
# build from TORCH_INDEX when that answers (about 200 MB instead of PyPI's CUDA stack, about
# 3 GB), else from PyPI; TORCH_INDEX= goes to PyPI directly.
DEMO_VENV   ?= .venv-demo
DEMO_PY     := $(DEMO_VENV)/bin/python
DEMO_STAMP  := $(DEMO_VENV)/.installed
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
DEMO_ARGS   ?=

.PHONY: venv demo test test-unit check audit browser stack-up stack-down stack-status bench clean

$(STAMP): pyproject.toml setup.py
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11+" >&2; exit 2; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[attribution,embedder-export,faiss,dev]'
	touch $(STAMP)

venv: $(STAMP)

$(DEMO_STAMP): pyproject.toml setup.py
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11+" >&2; exit 2; }
	test -x $(DEMO_PY) || $(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_PY) -m pip install --quiet --upgrade pip
	$(if $(TORCH_INDEX),$(DEMO_PY) -m pip install --quiet --only-binary=:all: --retries 1 --timeout 15 --index-url $(TORCH_INDEX) torch 2>/dev/null || echo "$(TORCH_INDEX) did not answer: torch comes from PyPI")
	$(DEMO_PY) -m pip install --quiet --only-binary=:all: -e '.[demo]' 2> $(DEMO_VENV)/install.log \
	  || { cat $(DEMO_VENV)/install.log >&2; exit 1; }
	touch $(DEMO_STAMP)

## The demo: embedded mode, no services (DEMO_ARGS=-v shows the libraries' own output).
demo: $(DEMO_STAMP)
	$(DEMO_VENV)/bin/driftscope demo --out demo-out $(DEMO_ARGS)

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
	rm -rf $(VENV) $(DEMO_VENV) demo-out .mypy_cache .ruff_cache .pytest_cache
