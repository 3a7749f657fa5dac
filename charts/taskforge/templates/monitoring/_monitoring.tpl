{{/*
Helpers of the monitoring objects (ServiceMonitor, PodMonitor, PrometheusRule, Grafana dashboard
ConfigMap). They build on the chart's helpers in templates/_helpers.tpl.
*/}}

{{/*
taskforge.monitoring.labels: the chart's standard labels (component "monitoring") plus `extra`,
labels from values such as {release: kube-prometheus-stack}, which kube-prometheus-stack selects
monitors and rules on. `extra` wins on a clash; the result is a YAML map without duplicate keys.
Call: include "taskforge.monitoring.labels" (dict "root" $ "extra" $labels)
*/}}
{{- define "taskforge.monitoring.labels" -}}
{{- $standard := include "taskforge.labels" (dict "root" .root "component" "monitoring") | fromYaml -}}
{{- toYaml (merge (dict) (.extra | default dict) $standard) -}}
{{- end -}}

{{/*
taskforge.monitoring.requireApi: fail loudly when a monitoring.coreos.com/v1 object is enabled
but the cluster does not serve the API, instead of dropping the object silently (the same rule
as check-values.yaml, kept here so each template stands on its own). Offline renders pass
--api-versions monitoring.coreos.com/v1 or list it in capabilities.extraApiVersions.
Call: include "taskforge.monitoring.requireApi" (dict "root" $ "kind" "ServiceMonitor" "value" "metrics.serviceMonitor.enabled")
*/}}
{{- define "taskforge.monitoring.requireApi" -}}
{{- $gv := "monitoring.coreos.com/v1" -}}
{{- if not (include "taskforge.hasApi" (dict "root" .root "api" $gv)) -}}
{{- fail (printf "%s=true but the cluster does not serve %s (%s): install the Prometheus Operator CRDs first (e.g. the prometheus-operator-crds chart), pass --api-versions %s to `helm template`, add it to capabilities.extraApiVersions, or set %s=false" .value $gv .kind $gv .value) -}}
{{- end -}}
{{- end -}}
