# Security scan of the locked Python dependencies: every package uv.lock pins from a registry is
# checked against PyPI's vulnerability data (pip-audit, then PyPI's project documents for what
# pip-audit could not look up; see scripts/audit_deps.py). Needs https access to pypi.org.
#
# A finding fails the target with a `FAIL [audit]: <package> <version>: <advisory ids>` line.
# Fix it by upgrading (`uv lock --upgrade-package <package>`), or accept it for a while in
# pyproject.toml, [tool.taskforge.audit] accept, with a reason and an expiry date.

ifndef TASKFORGE_AUDIT_MK
TASKFORGE_AUDIT_MK := 1

UV ?= $(or $(shell command -v uv 2>/dev/null),python3 -m uv)
UV_RUN ?= $(UV) run --frozen

.PHONY: audit

audit: ## Scan the locked Python dependencies for known vulnerabilities (pip-audit, PyPI)
	@echo "==> [audit] locked dependencies (uv.lock) against PyPI's vulnerability data"
	@$(UV_RUN) python -m scripts.audit_deps \
		|| { echo "FAIL [audit]: vulnerable, unaudited or expired-acceptance dependencies (see above)" >&2; exit 1; }

endif
