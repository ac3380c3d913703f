# The README's two commands. Each one does its own set-up from a fresh clone.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

# Use the Terraform provider mirror when this machine has one (the dev box and CI do); elsewhere
# Terraform downloads providers from the registry as usual.
TF_PLUGIN_MIRROR ?= /opt/tf-plugins
ifneq ($(wildcard $(TF_PLUGIN_MIRROR)/.),)
export LABKIT_TF_PLUGIN_MIRROR ?= $(TF_PLUGIN_MIRROR)
endif

.PHONY: help jupyter lab report test nbval setup lint deptry typecheck clean tools check-terraform browser lock

help:
	@echo "make jupyter  open JupyterLab on notebooks/ (the lessons), on loopback, with the lab's kernel"
	@echo "make lab      run the lessons headless on the offline sandbox, then build their site"
	@echo "make report   rebuild the site of the newest run (runs/<time>/site/)"
	@echo "make test     lint, type-check and run every test (integration included)"
	@echo "make nbval    run the notebooks under nbval (pytest --nbval-lax notebooks/)"
	@echo "make lock     pin the dependencies again at the newest allowed versions (requirements/)"

# The stamp is rebuilt whenever the package's dependencies or their pins change. Every dependency is
# installed at the version requirements/lock.txt pins (what the suite last passed with), so a new
# upstream release cannot change a fresh clone's `make test`; `make lock` takes upgrades.
$(BIN)/.installed: pyproject.toml requirements/lock.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed; set PYTHON=python3.11")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements/lock.txt -e ".[dev,lab]"
	$(BIN)/python -c 'import labkit; print("Jupyter kernel:", labkit.ensure_kernel())'
	@# Notebooks are committed without outputs: git runs nbstripout on every notebook it stages.
	@if git rev-parse --git-dir >/dev/null 2>&1; then \
	  $(BIN)/nbstripout --install --attributes .gitattributes && \
	  git config filter.nbstripout.clean '"$(abspath $(BIN))/python" -m nbstripout --keep-id'; fi
	@touch $@

setup: $(BIN)/.installed

# The workflows too: actionlint (syntax, expressions, and shellcheck on run: steps when it is on PATH)
# and zizmor (security: pinning, permissions, injection); both must report nothing. zizmor's online
# audits need a GitHub token: --offline runs the others.
lint: setup
	$(BIN)/ruff check labkit app tests bench notebooks
	$(BIN)/lint-imports
	$(MAKE) --no-print-directory deptry
	$(BIN)/actionlint
	$(BIN)/zizmor --offline --no-progress .github/workflows

# Every import declared, every dependency used ([tool.deptry] in pyproject.toml). Twice: the shipped
# code (labkit/, app/, the notebooks) against [project] dependencies alone, then the dev code (tests/,
# bench/, notebooks/conftest.py) against those plus the [dev] extra.
deptry: setup
	$(BIN)/deptry .
	$(BIN)/deptry tests bench notebooks --exclude '\.ipynb$$' --optional-dependencies-dev-groups lab --ignore DEP002

typecheck: setup
	$(BIN)/mypy

# checkov and its heavy dependencies live in their own venv, apart from labkit's.
TOOLS ?= .venv-tools
$(TOOLS)/.installed: requirements/checkov.txt
	@test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --upgrade pip
	$(TOOLS)/bin/python -m pip install --quiet -r requirements/checkov.txt
	@touch $@

tools: $(TOOLS)/.installed

# Pin every dependency again at the newest versions pyproject.toml (and requirements/checkov.in)
# allow, with pip-tools in a venv of its own; then run `make test` before committing the lock files.
LOCKER ?= .venv-lock
PIP_COMPILE := CUSTOM_COMPILE_COMMAND="make lock" $(LOCKER)/bin/pip-compile --quiet --upgrade --strip-extras \
  --no-emit-index-url --no-emit-find-links
lock:
	@test -x $(LOCKER)/bin/pip-compile || { $(PYTHON) -m venv $(LOCKER) && $(LOCKER)/bin/python -m pip install --quiet pip-tools; }
	$(PIP_COMPILE) --extra=dev --extra=lab --output-file=requirements/lock.txt pyproject.toml
	$(PIP_COMPILE) --output-file=requirements/checkov.txt requirements/checkov.in

# fmt -check, validate, `terraform test` and checkov over terraform/: the suite's own tests of it
# (tests/terraform), which terraform.yml runs on a pull request without the rest of `make test`.
check-terraform: setup tools
	$(BIN)/pytest tests/terraform

# The suite checks the lessons' site in a headless browser (tests/notebooks/test_learning_path.py):
# Debian's chromium (Google Chrome also does), driven by Playwright through its path; Playwright's own
# browser download is never used. Installed with apt when missing and running as root (CI), else named.
BROWSERS := chromium chromium-browser google-chrome google-chrome-stable
browser:
	@if ! command -v $(BROWSERS) >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium (apt) for the site test"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "make test needs a headless browser for the site test: none of $(BROWSERS) is on PATH." >&2; \
	    echo "Install one, e.g. sudo apt-get install chromium (Debian) or sudo apt-get install chromium-browser." >&2; \
	    exit 1; \
	  fi; \
	fi

# The set-up, the checks and the other installs before pytest run side by side (the browser's apt
# install and checkov's venv wait on disk and network while pip, ruff and mypy use the CPU); each
# one's output is printed together when it ends.
test:
	$(MAKE) --no-print-directory --jobs=4 --output-sync=target lint typecheck tools browser
	$(BIN)/pytest

# JupyterLab on the lessons, from the project's environment, listening on loopback only. JupyterLab
# refuses to run as root unless told; containers and CI machines often are root.
# JUPYTER_ARGS passes more options, e.g. make jupyter JUPYTER_ARGS="--no-browser --port 8899".
jupyter: setup
	$(BIN)/jupyter lab --ServerApp.ip=127.0.0.1 --ServerApp.root_dir=notebooks \
	  $(if $(filter 0,$(shell id -u)),--allow-root) $(JUPYTER_ARGS)

# The learning path headless on the sandbox: executed copies and figures go to runs/<time>/, then
# their site to runs/<time>/site/ (labkit report prints where).
lab: setup
	$(BIN)/labkit doctor
	$(BIN)/labkit run notebooks
	$(BIN)/labkit report

# The site of the newest run under runs/, built again (after a change to labkit/lab/report.py, say).
report: setup
	$(BIN)/labkit report

# The learning path under nbval (each cell a test, in one kernel per notebook), on .labkit's sandbox.
nbval: setup
	$(BIN)/pytest --nbval-lax notebooks/

clean:
	rm -rf $(VENV) $(LOCKER) .labkit runs .pytest_cache .mypy_cache .ruff_cache
