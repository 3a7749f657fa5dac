# TaskForge developer and CI entry points.  Run `make help` for the list of targets.
#
# `make test` is the one command CI runs (via .ci/run): it installs what is missing
# (uv, redis-server, the locked Python environment), runs the test suite without the chaos
# and bench suites, then lints.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

# A working uv command: the binary if it is on PATH, else the module pip installed.
# Recursive (`?=`), so it is re-resolved after `bootstrap-uv` has installed uv.
UV ?= $(or $(shell command -v uv 2>/dev/null),python3 -m uv)
# Never re-lock from make: the lock file is the single source of truth for CI.
UV_RUN = $(UV) run --frozen

include mk/tools.mk mk/chart.mk mk/images.mk mk/kube.mk mk/audit.mk mk/jaeger.mk mk/dashlint.mk

LINT_PATHS := services tests scripts
PYTEST_ARGS ?=
BENCH_ARGS ?=

LINT_CHECKS := lint-ruff lint-format lint-mypy lint-budgets lint-no-keys-scan lint-no-noqa-c901

.PHONY: up help bootstrap bootstrap-uv bootstrap-redis bootstrap-promtool sync test lint $(LINT_CHECKS) fmt \
	chaos bench clean distclean

help: ## List the targets
	@echo "TaskForge make targets:"
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) \
		| awk 'BEGIN {FS = ":.*## "} {printf "  %-20s %s\n", $$1, $$2}'
	@echo
	@echo "Variables: PYTEST_ARGS (extra pytest args for test/chaos), BENCH_ARGS, UV"

# ---------------------------------------------------------------------------- bootstrap

bootstrap: bootstrap-uv bootstrap-redis bootstrap-promtool sync ## Install uv, redis-server, promtool and the locked environment

bootstrap-uv: ## Install uv with pip if it is missing
	@if command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1; then \
		echo "uv: $$(uv --version 2>/dev/null || python3 -m uv --version)"; \
	else \
		if ! python3 -m pip --version >/dev/null 2>&1; then \
			echo "ERROR [bootstrap-uv]: uv is missing and python3 has no pip to install it." >&2; \
			echo "  Install pip (Debian: apt-get install -y python3-pip) or uv itself" >&2; \
			echo "  (https://docs.astral.sh/uv/getting-started/installation/), then re-run." >&2; \
			exit 1; \
		fi; \
		echo "uv not found: installing it with pip"; \
		export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1; \
		python3 -m pip install --quiet uv 2>/dev/null || { \
			echo "plain pip install failed (PEP 668 externally-managed python?): retrying with --break-system-packages"; \
			python3 -m pip install --quiet --break-system-packages uv; }; \
		python3 -m uv --version >/dev/null 2>&1 || command -v uv >/dev/null 2>&1 || { \
			echo "ERROR [bootstrap-uv]: pip install uv did not give a working uv." >&2; exit 1; }; \
		echo "uv: $$(uv --version 2>/dev/null || python3 -m uv --version)"; \
	fi

bootstrap-promtool: ## Install promtool (Debian package prometheus) with apt-get if it is missing
	@if command -v promtool >/dev/null 2>&1; then \
		echo "promtool: $$(promtool --version 2>&1 | head -1)"; \
	elif [ "$$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "promtool not found: installing the prometheus package with apt-get"; \
		export DEBIAN_FRONTEND=noninteractive; \
		{ apt-get install -y --no-install-recommends prometheus \
		  || { apt-get update && apt-get install -y --no-install-recommends prometheus; }; } \
		|| { echo "ERROR [bootstrap-promtool]: apt-get install prometheus failed." >&2; exit 1; }; \
		command -v promtool >/dev/null 2>&1 || { echo "ERROR [bootstrap-promtool]: no promtool after install" >&2; exit 1; }; \
	else \
		echo "ERROR [bootstrap-promtool]: promtool is missing; install Debian's prometheus package" >&2; \
		exit 1; \
	fi

bootstrap-redis: ## Install redis-server with apt-get (as root) if it is missing
	@find_redis() { \
		command -v redis-server 2>/dev/null && return 0; \
		for d in /usr/sbin /usr/bin /usr/local/bin; do \
			if [ -x "$$d/redis-server" ]; then echo "$$d/redis-server"; return 0; fi; \
		done; \
		return 1; \
	}; \
	if bin=$$(find_redis); then \
		echo "redis-server: $$bin ($$("$$bin" --version | cut -d' ' -f3))"; \
		exit 0; \
	fi; \
	if [ "$$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "redis-server not found: installing it with apt-get"; \
		export DEBIAN_FRONTEND=noninteractive; \
		if ! { apt-get update && apt-get install -y --no-install-recommends redis-server; }; then \
			echo "ERROR [bootstrap-redis]: apt-get install redis-server failed (see above)." >&2; \
			exit 1; \
		fi; \
	fi; \
	if bin=$$(find_redis); then \
		echo "redis-server: $$bin ($$("$$bin" --version | cut -d' ' -f3))"; \
	else \
		echo "ERROR [bootstrap-redis]: redis-server is required by the tests and is not installed." >&2; \
		echo "  Debian/Ubuntu: sudo apt-get update && sudo apt-get install -y redis-server" >&2; \
		echo "  macOS:         brew install redis" >&2; \
		echo "  Or put a redis-server binary on PATH (or set REDIS_SERVER_BIN for pytest)." >&2; \
		exit 1; \
	fi

# --locked: fail if uv.lock is out of date with the pyproject files, instead of silently
#           re-locking (plain sync) or silently ignoring new dependencies (--frozen).
# --all-packages: install every workspace member; the dev group is a default group, so it is
#           included without --group/--dev.
sync: bootstrap-uv ## Install the locked environment (all workspace packages + dev group)
	$(UV) sync --locked --all-packages

# ---------------------------------------------------------------------------- tests

test: bootstrap jaeger dashlint ## Run the test suite (no full chaos run, no benchmark runs), then lint
	@echo "==> [test] pytest (excluding the full chaos run; the bench suite contributes only its method tests)"
	@rc=0; \
	$(UV_RUN) pytest tests -m "not chaos" --ignore=tests/chaos \
		$(PYTEST_ARGS) || rc=$$?; \
	if [ "$$rc" -eq 5 ]; then \
		echo "FAIL [test]: pytest collected no tests (exit status 5); a run that tests nothing is not a pass." >&2; \
		exit 1; \
	elif [ "$$rc" -ne 0 ]; then \
		echo "FAIL [test]: pytest exited with status $$rc" >&2; \
		exit "$$rc"; \
	fi
	@$(MAKE) --no-print-directory lint
	@$(MAKE) --no-print-directory chart-lint chart-validate dashboard-lint
	@$(MAKE) --no-print-directory audit

up: bootstrap ## Run redis, api, gateway (127.0.0.1:8080), worker and scheduler locally
	$(UV_RUN) python -m scripts.devstack

chaos: bootstrap ## Run the chaos (failure-injection) suite
	@rc=0; $(UV_RUN) pytest -m chaos tests/chaos $(PYTEST_ARGS) || rc=$$?; \
	if [ "$$rc" -eq 5 ]; then \
		echo "FAIL [chaos]: pytest collected no chaos tests (exit status 5)" >&2; exit 1; \
	fi; \
	exit "$$rc"

bench: bootstrap ## Benchmarks: drain, HTTP enqueue vs its floor, Python enqueue, pickup latency, Redis costs and ceiling (BENCH_ARGS=--quick)
	@for tool in wrk:wrk redis-benchmark:redis-tools; do \
		bin=$${tool%%:*}; pkg=$${tool#*:}; \
		command -v "$$bin" >/dev/null 2>&1 && continue; \
		if [ "$$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "$$bin not found: installing $$pkg with apt-get"; \
			export DEBIAN_FRONTEND=noninteractive; \
			apt-get install -y -qq --no-install-recommends "$$pkg" >/dev/null \
			|| { apt-get update -qq && apt-get install -y -qq --no-install-recommends "$$pkg"; } \
			|| { echo "ERROR [bench]: apt-get install $$pkg failed" >&2; exit 1; }; \
		else echo "ERROR [bench]: $$bin is missing; install it (apt-get install $$pkg)" >&2; exit 1; fi; \
	done
	$(UV_RUN) python -m tests.bench $(BENCH_ARGS)

# ---------------------------------------------------------------------------- lint

lint: ## Run every lint check (all run; each failure is reported by name)
	@if $(MAKE) --no-print-directory -k $(LINT_CHECKS); then \
		echo "lint: all checks passed"; \
	else \
		echo "FAIL [lint]: one or more checks failed (see the FAIL [...] lines above)" >&2; \
		exit 1; \
	fi

lint-ruff:
	@echo "==> [lint-ruff] ruff check $(LINT_PATHS)"
	@$(UV_RUN) ruff check $(LINT_PATHS) \
		|| { echo "FAIL [lint-ruff]: ruff check found problems (some are fixed by: make fmt)" >&2; exit 1; }

lint-format:
	@echo "==> [lint-format] ruff format --check $(LINT_PATHS)"
	@$(UV_RUN) ruff format --check $(LINT_PATHS) \
		|| { echo "FAIL [lint-format]: files need formatting (run: make fmt)" >&2; exit 1; }

lint-mypy:
	@echo "==> [lint-mypy] mypy (strict; packages from pyproject.toml)"
	@$(UV_RUN) mypy \
		|| { echo "FAIL [lint-mypy]: mypy found type errors" >&2; exit 1; }

lint-budgets:
	@echo "==> [lint-budgets] scripts/check_budgets.py services (module <= 400, function <= 60 lines)"
	@$(UV_RUN) python scripts/check_budgets.py services \
		|| { echo "FAIL [lint-budgets]: size budget exceeded or noqa: C901 used" >&2; exit 1; }

lint-no-keys-scan:
	@echo "==> [lint-no-keys-scan] no KEYS/SCAN calls in services/"
	@rc=0; grep -rniE --exclude-dir=__pycache__ "call\(['\"](keys|scan)['\"]" services/ || rc=$$?; \
	if [ "$$rc" -eq 0 ]; then \
		echo "FAIL [lint-no-keys-scan]: KEYS/SCAN must not be called (matches above)" >&2; exit 1; \
	elif [ "$$rc" -ne 1 ]; then \
		echo "FAIL [lint-no-keys-scan]: grep failed with status $$rc" >&2; exit 1; \
	fi

lint-no-noqa-c901:
	@echo "==> [lint-no-noqa-c901] no 'noqa: C901' in services/"
	@rc=0; grep -rn --exclude-dir=__pycache__ "noqa: C901" services/ || rc=$$?; \
	if [ "$$rc" -eq 0 ]; then \
		echo "FAIL [lint-no-noqa-c901]: complexity must be reduced, not silenced (matches above)" >&2; exit 1; \
	elif [ "$$rc" -ne 1 ]; then \
		echo "FAIL [lint-no-noqa-c901]: grep failed with status $$rc" >&2; exit 1; \
	fi

fmt: ## Format and auto-fix (ruff format + ruff check --fix)
	$(UV_RUN) ruff format $(LINT_PATHS)
	$(UV_RUN) ruff check --fix $(LINT_PATHS)

# ---------------------------------------------------------------------------- clean

clean: ## Remove caches and build artefacts (keeps .venv)
	find . -path ./.venv -prune -o -path ./.git -prune -o \
		\( -name __pycache__ -o -name '*.egg-info' \) -type d -print0 | xargs -0 rm -rf
	rm -rf .pytest_cache .mypy_cache .ruff_cache .cache dist build bin .coverage htmlcov

distclean: clean ## clean, and also remove .venv
	rm -rf .venv
