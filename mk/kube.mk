# A real Kubernetes cluster on this machine, built from Go module sources, and the chart tested on
# it: `make kube-test`. See docs/kubernetes-local.md. Needs Go, gcc, root (the node: containerd,
# mounts, iptables) and podman with the images of `make images-build`.
#
#   kube-tools  build etcd, Kubernetes (servers, kubelet, kube-proxy, kubectl), KEDA, CoreDNS and
#               the Prometheus Operator CRDs into $(TASKFORGE_CACHE)/kube/<part>-<version>/
#   kube-test   cluster up in a fresh state dir, server-side validation of every values file,
#               install / helm test / upgrade / force-deleted worker / KEDA / rollback /
#               uninstall scenarios, one summary line; the cluster is stopped even on failure

ifndef TASKFORGE_KUBE_MK
TASKFORGE_KUBE_MK := 1

ifndef TASKFORGE_TOOLS_MK
include $(dir $(lastword $(MAKEFILE_LIST)))tools.mk
endif

UV ?= $(or $(shell command -v uv 2>/dev/null),python3 -m uv)

.PHONY: kube-tools kube-test

kube-tools: tools-check-go ## Build the local cluster's parts from Go module sources into the version-keyed cache
	bash scripts/kube/build.sh

kube-test: kube-tools helm images-build ## Run the chart on a real local cluster (KEDA, upgrades, killed pods) and print one summary line
	HELM="$(HELM)" UV="$(UV)" bash scripts/kube/kube-test.sh

endif
