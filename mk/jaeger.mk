# Jaeger v2, the trace backend of the tracing tests and of a local `make up`. Included by the main
# Makefile; also usable alone: `make -f mk/jaeger.mk jaeger`.
#
# Jaeger v2's `cmd/jaeger` lives in the Go module github.com/jaegertracing/jaeger (v1.76.0 holds
# Jaeger v2.13.0). `go install <module>@<version>` refuses it because its go.mod has replace
# directives, so it is built from a tools module of our own, tools/jaeger, whose go.mod (a `tool`
# directive) and go.sum pin the version and every dependency. Bump it there:
#   cd tools/jaeger && go get -tool github.com/jaegertracing/jaeger/cmd/jaeger@<version> && go mod tidy
#
# `jaeger` is idempotent like the targets of mk/tools.mk: it reads the Jaeger module version
# compiled into bin/jaeger (`go version -m`) and does nothing when it matches the pin.

ifndef TASKFORGE_JAEGER_MK
TASKFORGE_JAEGER_MK := 1

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c

JAEGER_MODULE := github.com/jaegertracing/jaeger
JAEGER_TOOLS_DIR := $(CURDIR)/tools/jaeger
# The pin is the tools module's requirement, read from its go.mod: one place to change it.
JAEGER_VERSION := $(shell awk '$$1 == "$(JAEGER_MODULE)" {print $$2; exit}' "$(JAEGER_TOOLS_DIR)/go.mod")
TOOLS_BIN ?= $(CURDIR)/bin
JAEGER ?= $(TOOLS_BIN)/jaeger
# The main Makefile sets it; alone, this file uses uv from PATH.
UV_RUN ?= uv run --frozen
# Fills in what `jaeger version` and the UI report (Jaeger's release build stamps it too).
JAEGER_LDFLAGS := -X $(JAEGER_MODULE)/internal/version.latestVersion=$(JAEGER_VERSION)

.PHONY: jaeger jaeger-up jaeger-trace jaeger-check-go

jaeger-check-go:
	@command -v go >/dev/null 2>&1 || { \
		echo "ERROR [jaeger]: Go is required to build Jaeger into ./bin (https://go.dev/doc/install)." >&2; \
		exit 1; }

jaeger: jaeger-check-go ## Build the pinned Jaeger v2 (tools/jaeger/go.mod) into ./bin (mk/jaeger.mk)
	@have="$$(go version -m "$(JAEGER)" 2>/dev/null | awk '($$1 == "mod" || $$1 == "dep") && $$2 == "$(JAEGER_MODULE)" {print $$3; exit}' || true)"; \
	if [ -x "$(JAEGER)" ] && [ "$$have" = "$(JAEGER_VERSION)" ]; then \
		echo "jaeger $(JAEGER_VERSION): up to date in $(TOOLS_BIN)"; \
	else \
		echo "==> [jaeger] go build $(JAEGER_MODULE)/cmd/jaeger@$(JAEGER_VERSION) into $(TOOLS_BIN)$${have:+ (had $$have)}"; \
		echo "    (minutes of compiling; a cold module cache downloads the dependencies first)"; \
		mkdir -p "$(TOOLS_BIN)"; \
		cd "$(JAEGER_TOOLS_DIR)" && GOFLAGS="$${GOFLAGS:-} -buildvcs=false" \
			go build -ldflags '$(JAEGER_LDFLAGS)' -o "$(JAEGER).tmp" "$(JAEGER_MODULE)/cmd/jaeger"; \
		mv -f "$(JAEGER).tmp" "$(JAEGER)"; \
	fi

# Foreground, standard ports on 127.0.0.1: OTLP http 4318 (what the services export to when
# OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318), the query API (and UI) on 16686, the query
# gRPC API on 16685. Spans are kept in memory (the last 100000 traces) and lost on Ctrl-C.
# A build from Go module sources serves a placeholder page instead of the UI (the UI is built
# with npm in Jaeger's release process): `make jaeger-trace TRACE=<trace id>` prints a trace as a
# tree; JAEGER_UI_ASSETS=<a jaeger-ui build directory> serves the UI if you have one.
jaeger-up: jaeger ## Run Jaeger in the foreground for `make up` (OTLP :4318, query API :16686)
	@echo "Jaeger: OTLP/HTTP http://127.0.0.1:4318, query API http://127.0.0.1:16686/api/v3 (Ctrl-C stops it)"
	@echo "In another terminal: OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 make up"
	@echo "A task's trace: make jaeger-trace TRACE=<trace id of the task's traceparent>"
	exec "$(JAEGER)" --config "$(JAEGER_TOOLS_DIR)/local.yaml"

# The trace id is the second field of a task's `traceparent` (GET /v1/tasks/{id}) or of the
# traceparent header a client sent. JAEGER_QUERY_URL reaches a Jaeger elsewhere.
JAEGER_QUERY_URL ?= http://127.0.0.1:16686
jaeger-trace: ## Print trace TRACE=<id> from the Jaeger of `make jaeger-up` as a tree of spans
	@[ -n "$(TRACE)" ] || { echo "usage: make jaeger-trace TRACE=<32 hex digits>" >&2; exit 2; }
	@$(UV_RUN) python -m tests.support.jaeger "$(TRACE)" "$(JAEGER_QUERY_URL)"

endif
