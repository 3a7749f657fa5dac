# Pinned tools for the chart and CI checks, installed into ./bin with `go install` (as Kubebuilder
# projects do). Included by the main Makefile; also usable alone: `make -f mk/tools.mk tools`.
#
# Each target is idempotent: it reads the version compiled into bin/<tool> (`go version -m`, or
# `helm version` for helm) and does nothing when it already matches the pin. Needs only Go.

ifndef TASKFORGE_TOOLS_MK
TASKFORGE_TOOLS_MK := 1

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c

# ------------------------------------------------------------------------ pinned versions
# Change a version here only; every target, test and CI job reads it from this block.
HELM_VERSION ?= v3.22.0
KUBECONFORM_VERSION ?= v0.8.0
KIND_VERSION ?= v0.33.0
ACTIONLINT_VERSION ?= v1.7.12
# Kubernetes minor of the k8s.io/client-go that HELM_VERSION builds with (v0.37 for v3.22.0):
# Helm's own release build stamps it with -ldflags as the default capabilities (`helm template`
# and `helm lint` render for it); a plain `go install` would leave Helm's fallback, v1.20.
HELM_K8S_MINOR ?= 37
# Sources of the schemas kubeconform validates against (all Go modules, so pinned and offline
# after the first download): the Kubernetes OpenAPI of the version kind's default node runs,
# and the CRDs of KEDA and the Prometheus Operator.
KUBERNETES_SCHEMA_VERSION ?= v1.37.0
KEDA_VERSION ?= v2.21.0
PROMETHEUS_OPERATOR_VERSION ?= v0.85.0

HELM_MODULE := helm.sh/helm/v3
KUBECONFORM_MODULE := github.com/yannh/kubeconform
KIND_MODULE := sigs.k8s.io/kind
ACTIONLINT_MODULE := github.com/rhysd/actionlint

TOOLS_BIN ?= $(CURDIR)/bin
HELM ?= $(TOOLS_BIN)/helm
KUBECONFORM ?= $(TOOLS_BIN)/kubeconform
KIND ?= $(TOOLS_BIN)/kind
ACTIONLINT ?= $(TOOLS_BIN)/actionlint

HELM_LDFLAGS := -X $(HELM_MODULE)/internal/version.version=$(HELM_VERSION) \
	-X $(HELM_MODULE)/internal/version.gitTreeState=clean \
	-X $(HELM_MODULE)/pkg/chartutil.k8sVersionMajor=1 \
	-X $(HELM_MODULE)/pkg/chartutil.k8sVersionMinor=$(HELM_K8S_MINOR) \
	-X $(HELM_MODULE)/pkg/lint/rules.k8sVersionMajor=1 \
	-X $(HELM_MODULE)/pkg/lint/rules.k8sVersionMinor=$(HELM_K8S_MINOR)

.PHONY: tools helm kubeconform kind actionlint tools-check-go

tools: helm kubeconform kind actionlint ## Install the pinned helm, kubeconform, kind and actionlint into ./bin

tools-check-go:
	@command -v go >/dev/null 2>&1 || { \
		echo "ERROR [tools]: Go is required to install the pinned tools into ./bin (https://go.dev/doc/install)." >&2; \
		exit 1; }

# $(call go-install,<name>,<module path>/<cmd dir>,<main module>,<version>[,<extra go install flags>])
# Skips when bin/<name> was built from <main module> at <version>.
define go-install
	@have="$$(go version -m "$(TOOLS_BIN)/$(1)" 2>/dev/null | awk '$$1 == "mod" && $$2 == "$(3)" {print $$3; exit}' || true)"; \
	if [ -x "$(TOOLS_BIN)/$(1)" ] && [ "$$have" = "$(4)" ]; then \
		echo "$(1) $(4): up to date in $(TOOLS_BIN)"; \
	else \
		echo "==> [tools] go install $(2)@$(4) into $(TOOLS_BIN)$${have:+ (had $$have)}"; \
		mkdir -p "$(TOOLS_BIN)"; \
		GOBIN="$(TOOLS_BIN)" GOFLAGS="$${GOFLAGS:-} -buildvcs=false" go install $(5) "$(2)@$(4)"; \
	fi
endef

# Helm checks its stamped version too: a plain `go install` of the same module (no -ldflags)
# reports "v3.22" and renders for Kubernetes v1.20, so it is rebuilt.
helm: tools-check-go ## Install the pinned helm into ./bin (mk/tools.mk)
	@have="$$("$(HELM)" version --template '{{.Version}}' 2>/dev/null || true)"; \
	if [ "$$have" = "$(HELM_VERSION)" ]; then \
		echo "helm $(HELM_VERSION): up to date in $(TOOLS_BIN)"; \
	else \
		echo "==> [tools] go install $(HELM_MODULE)/cmd/helm@$(HELM_VERSION) into $(TOOLS_BIN)$${have:+ (had $$have)}"; \
		mkdir -p "$(TOOLS_BIN)"; \
		GOBIN="$(TOOLS_BIN)" GOFLAGS="$${GOFLAGS:-} -buildvcs=false" \
			go install -ldflags '$(HELM_LDFLAGS)' "$(HELM_MODULE)/cmd/helm@$(HELM_VERSION)"; \
		"$(HELM)" version --template 'helm {{.Version}}{{"\n"}}'; \
	fi

kubeconform: tools-check-go ## Install the pinned kubeconform into ./bin (mk/tools.mk)
	$(call go-install,kubeconform,$(KUBECONFORM_MODULE)/cmd/kubeconform,$(KUBECONFORM_MODULE),$(KUBECONFORM_VERSION))

kind: tools-check-go ## Install the pinned kind into ./bin (mk/tools.mk)
	$(call go-install,kind,$(KIND_MODULE),$(KIND_MODULE),$(KIND_VERSION))

actionlint: tools-check-go ## Install the pinned actionlint into ./bin (mk/tools.mk)
	$(call go-install,actionlint,$(ACTIONLINT_MODULE)/cmd/actionlint,$(ACTIONLINT_MODULE),$(ACTIONLINT_VERSION))

endif
