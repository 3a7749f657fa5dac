# Helm chart checks: lint, schema validation of the rendered manifests, and the chart tests.
# Included by the main Makefile; also usable alone: `make -f mk/chart.mk chart-check`.
# Needs Go (for the pinned tools and the schema sources) and the uv environment (make bootstrap).
#
#   chart-lint      helm lint --strict with the default values and every values file
#   chart-validate  helm template each values file | kubeconform -strict against Kubernetes and
#                   CRD (KEDA, Prometheus Operator) schemas generated offline from Go modules
#   chart-test      pytest tests/chart (rendering, check-values, schema meta-tests, KEDA against a
#                   real Redis, and a launch of the services from the rendered manifests)

ifndef TASKFORGE_CHART_MK
TASKFORGE_CHART_MK := 1

ifndef TASKFORGE_TOOLS_MK
include $(dir $(lastword $(MAKEFILE_LIST)))tools.mk
endif

UV ?= $(or $(shell command -v uv 2>/dev/null),python3 -m uv)
UV_RUN ?= $(UV) run --frozen
PYTEST_ARGS ?=

CHART_DIR := charts/taskforge
# Release name and namespace the checks render with.
CHART_RELEASE := taskforge
CHART_NAMESPACE := taskforge
# Every scenario the chart supports: the k8s/ values files and the chart's ci/ scenarios.
CHART_VALUES_FILES = $(sort $(wildcard k8s/values-*.yaml)) $(sort $(wildcard $(CHART_DIR)/ci/*-values.yaml))
# APIs of the cluster add-ons the scenarios may enable (KEDA, Prometheus Operator CRDs).
CHART_API_VERSIONS := keda.sh/v1alpha1 monitoring.coreos.com/v1

SCHEMA_CACHE ?= $(CURDIR)/.cache/kubeconform
SCHEMA_STAMP = $(SCHEMA_CACHE)/.generated-k8s-$(KUBERNETES_SCHEMA_VERSION)-keda-$(KEDA_VERSION)-prometheus-operator-$(PROMETHEUS_OPERATOR_VERSION)
KUBECONFORM_FLAGS = -strict -summary \
	-kubernetes-version $(patsubst v%,%,$(KUBERNETES_SCHEMA_VERSION)) \
	-schema-location $(SCHEMA_CACHE)/k8s \
	-schema-location '$(SCHEMA_CACHE)/crds/{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json'

.PHONY: chart-check chart-lint chart-validate chart-test chart-schemas

chart-check: chart-lint chart-validate chart-test ## Lint, validate (kubeconform) and test the Helm chart

chart-lint: helm ## helm lint --strict the chart with every values file
	@for values in "" $(CHART_VALUES_FILES); do \
		echo "==> [chart-lint] helm lint --strict $(CHART_DIR) $${values:+-f $$values}"; \
		"$(HELM)" lint --strict --quiet $(CHART_DIR) $${values:+-f "$$values"} \
			--set 'capabilities.extraApiVersions={$(subst $(space),$(comma),$(CHART_API_VERSIONS))}' \
			|| { echo "FAIL [chart-lint]: $${values:-default values}" >&2; exit 1; }; \
	done

chart-validate: helm kubeconform chart-schemas ## helm template every values file | kubeconform -strict
	@for values in "" $(CHART_VALUES_FILES); do \
		echo "==> [chart-validate] helm template $${values:-(default values)} | kubeconform -strict"; \
		"$(HELM)" template $(CHART_RELEASE) $(CHART_DIR) -n $(CHART_NAMESPACE) $${values:+-f "$$values"} \
			$(foreach api,$(CHART_API_VERSIONS),--api-versions $(api)) \
			| "$(KUBECONFORM)" $(KUBECONFORM_FLAGS) - \
			|| { echo "FAIL [chart-validate]: $${values:-default values}" >&2; exit 1; }; \
	done

chart-test: helm kubeconform chart-schemas ## Run the chart tests (pytest tests/chart)
	@echo "==> [chart-test] pytest tests/chart"
	@rc=0; $(UV_RUN) pytest tests/chart $(PYTEST_ARGS) || rc=$$?; \
	if [ "$$rc" -eq 5 ]; then echo "FAIL [chart-test]: no chart test collected" >&2; exit 1; fi; \
	exit "$$rc"

chart-schemas: $(SCHEMA_STAMP) ## Generate kubeconform's schemas from the pinned Go modules (cached)

# $(call module-dir,<module>@<version>): download a Go module (cached in GOMODCACHE) and print its
# directory. Outside any go.mod this needs no project module.
module-dir = $$(cd / && go mod download -json $(1) | python3 -c 'import json, sys; d = json.load(sys.stdin); sys.exit(d["Error"]) if "Error" in d else print(d["Dir"])')

$(SCHEMA_STAMP): scripts/crd_to_jsonschema.py | tools-check-go
	@echo "==> [chart-schemas] Kubernetes $(KUBERNETES_SCHEMA_VERSION), KEDA $(KEDA_VERSION), Prometheus Operator $(PROMETHEUS_OPERATOR_VERSION) -> $(SCHEMA_CACHE)"
	@rm -rf "$(SCHEMA_CACHE)" && mkdir -p "$(SCHEMA_CACHE)"
	@k8s="$(call module-dir,k8s.io/kubernetes@$(KUBERNETES_SCHEMA_VERSION))"; \
	keda="$(call module-dir,github.com/kedacore/keda/v2@$(KEDA_VERSION))"; \
	promop="$(call module-dir,github.com/prometheus-operator/prometheus-operator@$(PROMETHEUS_OPERATOR_VERSION))"; \
	$(UV_RUN) python scripts/crd_to_jsonschema.py openapi "$(SCHEMA_CACHE)/k8s" \
		"$$k8s/api/openapi-spec/swagger.json" --kubernetes-version $(KUBERNETES_SCHEMA_VERSION); \
	$(UV_RUN) python scripts/crd_to_jsonschema.py crd "$(SCHEMA_CACHE)/crds" \
		"$$keda"/config/crd/bases/*.yaml "$$promop"/example/prometheus-operator-crd/*.yaml
	@touch "$@"

comma := ,
empty :=
space := $(empty) $(empty)

endif
