# Security scan of the locked dependencies. (Being written.)

ifndef TASKFORGE_AUDIT_MK
TASKFORGE_AUDIT_MK := 1

.PHONY: audit

audit: ## Scan the locked Python dependencies for known vulnerabilities
	@echo "audit: not yet implemented" >&2; exit 1

endif
