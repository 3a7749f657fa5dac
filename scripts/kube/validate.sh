#!/usr/bin/env bash
# Server-side validation of every values file the project ships, against the running local
# cluster (cluster.sh up): `helm template` of each | `kubectl apply --dry-run=server`, each in a
# fresh namespace labelled with the Pod Security `restricted` level (enforce, warn and audit).
# `helm install --dry-run=server` would skip most of this (it validates little); here every
# object goes through the apiserver's schema, defaulting and admission (Pod Security included).
# Any rejected object and any warning fails the run.
#
#   validate.sh <state dir> <helm>     prints: values_files=<n> objects=<accepted>/<rendered>
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=versions.sh
. "$here/versions.sh"
# shellcheck source=lib.sh
. "$here/lib.sh"

[ $# -eq 2 ] || die "usage: validate.sh <state dir> <helm>"
S=$(realpath -m "$1")
HELM=$2
load_env
cd "$repo"
shopt -s nullglob
files=(k8s/values-*.yaml charts/taskforge/ci/*-values.yaml)
[ ${#files[@]} -gt 0 ] || die "no values files found"

rendered=0
accepted=0
i=0
for values in "${files[@]}"; do
    i=$((i + 1))
    ns=validate-$i
    kctl create namespace "$ns" >/dev/null
    kctl label namespace "$ns" pod-security.kubernetes.io/enforce=restricted \
        pod-security.kubernetes.io/warn=restricted pod-security.kubernetes.io/audit=restricted >/dev/null
    manifest=$S/validate-$i.yaml
    "$HELM" template taskforge charts/taskforge -n "$ns" -f "$values" --kube-version "$K8S_VERSION" \
        --api-versions keda.sh/v1alpha1 --api-versions monitoring.coreos.com/v1 >"$manifest" \
        || die "helm template failed for $values"
    # Every object: hooks and the `helm test` pod are rendered by `helm template` too.
    n=$(grep -c '^kind: ' "$manifest")
    # Pods name their ServiceAccount, which admission looks up for real even in a dry run: the
    # chart's ServiceAccounts are created first (the namespace is deleted afterwards).
    awk 'BEGIN {RS = "\n---\n"} /\nkind: ServiceAccount\n/ {print "---\n" $0}' "$manifest" \
        >"$S/validate-$i-sa.yaml"
    if [ -s "$S/validate-$i-sa.yaml" ]; then
        kctl apply -f "$S/validate-$i-sa.yaml" >/dev/null
    fi
    if ! kctl apply --dry-run=server -f "$manifest" >"$S/validate-$i.out" 2>"$S/validate-$i.err"; then
        cat "$S/validate-$i.err" >&2
        die "the apiserver rejected objects of $values"
    fi
    if [ -s "$S/validate-$i.err" ]; then
        cat "$S/validate-$i.err" >&2
        die "warnings (or errors) for $values: see above"
    fi
    ok=$(grep -c '(server dry run)$' "$S/validate-$i.out" || true)
    [ "$ok" -eq "$n" ] || die "$values: $ok of $n objects accepted"
    log "$values: $ok/$n objects accepted, no warning"
    rendered=$((rendered + n))
    accepted=$((accepted + ok))
    kctl delete namespace "$ns" --wait=false >/dev/null
done
echo "values_files=${#files[@]} objects=$accepted/$rendered"
