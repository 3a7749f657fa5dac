# A real Kubernetes cluster on this machine, built from Go module sources: `make kube-test`.
# (Being written; see scripts/kube/.)

ifndef TASKFORGE_KUBE_MK
TASKFORGE_KUBE_MK := 1

.PHONY: kube-tools

kube-tools: ## Build the local cluster's parts from Go module sources into the version-keyed cache
	bash scripts/kube/build.sh

endif
