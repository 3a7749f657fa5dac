# dashlint, the Grafana dashboard linter of tools/dashlint (docs/dashboard.md), built into ./bin
# with `go build` at the versions tools/dashlint/go.sum pins. Included by the main Makefile; also
# usable alone: `make -f mk/dashlint.mk dashlint`. Needs only Go.
#
# bin/dashlint is rebuilt only when a file under tools/dashlint is newer than it (make's own
# timestamp rule), so calling the target again is a no-op.

ifndef TASKFORGE_DASHLINT_MK
TASKFORGE_DASHLINT_MK := 1

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c

# The repository root, found from this file so that `make -f mk/dashlint.mk` works from anywhere.
DASHLINT_ROOT := $(patsubst %/,%,$(dir $(abspath $(dir $(lastword $(MAKEFILE_LIST))))))
DASHLINT_SRC := $(DASHLINT_ROOT)/tools/dashlint
TOOLS_BIN ?= $(DASHLINT_ROOT)/bin
DASHLINT ?= $(TOOLS_BIN)/dashlint
DASHLINT_SOURCES := $(shell find "$(DASHLINT_SRC)" -type f 2>/dev/null)
DASHBOARDS ?= $(DASHLINT_ROOT)/charts/taskforge/dashboards/taskforge.json

.PHONY: dashlint dashboard-lint

dashlint: $(DASHLINT) ## Build bin/dashlint (the Grafana dashboard linter) if its sources changed

# -mod=readonly: build exactly what go.mod and go.sum pin, never update them.
$(DASHLINT): $(DASHLINT_SOURCES)
	@command -v go >/dev/null 2>&1 || { \
		echo "ERROR [dashlint]: Go is required to build $@ (https://go.dev/doc/install)." >&2; \
		exit 1; }
	@echo "==> [dashlint] go build tools/dashlint into $@"
	@mkdir -p "$(@D)"
	@cd "$(DASHLINT_SRC)" && GOFLAGS="$${GOFLAGS:-} -buildvcs=false -mod=readonly" \
		go build -trimpath -o "$@" .
	@# go build leaves an identical binary untouched; the new time stamp records the check.
	@touch "$@"

dashboard-lint: dashlint ## Lint the chart's Grafana dashboard with bin/dashlint
	@"$(DASHLINT)" $(DASHBOARDS) && echo "dashboard-lint: $(notdir $(DASHBOARDS)) passed"

endif
