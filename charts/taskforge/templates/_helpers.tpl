{{/*
Helpers of the TaskForge chart. Every helper is prefixed "taskforge." (docs/conventions.md#chart-helpers).

Helpers that belong to one component take a dict: (dict "root" $ "component" "gateway").
taskforge.labels and taskforge.selectorLabels also accept the root context alone (no component).
*/}}

{{/* taskforge.name: the chart name (or nameOverride), cut to the 63 characters a label value allows. */}}
{{- define "taskforge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
taskforge.fullname: prefix of every object name: <release>-<chart>, or the release name alone when
it already contains the chart name, so `helm install taskforge` names Redis "taskforge-redis".
Cut to 63 characters because Service names become DNS labels.
*/}}
{{- define "taskforge.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* taskforge.chart: the helm.sh/chart label value; "+" is not allowed in label values. */}}
{{- define "taskforge.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
taskforge.root / taskforge.component (internal): split the polymorphic argument of the label
helpers, which is either the root context or (dict "root" $ "component" "x").
*/}}
{{- define "taskforge.component" -}}
{{- if and (kindIs "map" .) (hasKey . "component") -}}{{ .component }}{{- end -}}
{{- end -}}

{{/*
taskforge.componentName: name of a component's objects, <fullname>-<component>
(e.g. taskforge-gateway). Call: include "taskforge.componentName" (dict "root" $ "component" "gateway")
*/}}
{{- define "taskforge.componentName" -}}
{{- printf "%s-%s" (include "taskforge.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
taskforge.labels: the standard labels of every object (Helm best practice), plus
app.kubernetes.io/component when called with a component, plus commonLabels.
Call: include "taskforge.labels" . or (dict "root" $ "component" "worker")
*/}}
{{- define "taskforge.labels" -}}
{{- $root := . -}}
{{- if and (kindIs "map" .) (hasKey . "root") }}{{ $root = .root }}{{ end -}}
helm.sh/chart: {{ include "taskforge.chart" $root }}
{{ include "taskforge.selectorLabels" . }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
app.kubernetes.io/part-of: taskforge
{{- with $root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
taskforge.selectorLabels: only the labels that never change for the life of a release (name,
instance, and component when given): a Deployment's selector is immutable, so version or chart
labels here would make every upgrade fail.
Call: include "taskforge.selectorLabels" . or (dict "root" $ "component" "worker")
*/}}
{{- define "taskforge.selectorLabels" -}}
{{- $root := . -}}
{{- if and (kindIs "map" .) (hasKey . "root") }}{{ $root = .root }}{{ end -}}
app.kubernetes.io/name: {{ include "taskforge.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
{{- with include "taskforge.component" . }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end -}}

{{/* taskforge.serviceAccountName: the ServiceAccount every pod uses (created or named in values). */}}
{{- define "taskforge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "taskforge.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
taskforge.image: an image reference. TaskForge images ("app" true) get global.imageRegistry and
fall back to global.imageTag, then appVersion, so one value moves all four services together;
third-party images (Redis, exporter) are used as written. A digest pins the exact bytes.
Call: include "taskforge.image" (dict "root" $ "image" .Values.gateway.image "app" true)
*/}}
{{- define "taskforge.image" -}}
{{- $global := .root.Values.global -}}
{{- $repo := .image.repository -}}
{{- $tag := .image.tag -}}
{{- if .app -}}
{{- if $global.imageRegistry }}{{ $repo = printf "%s/%s" (trimSuffix "/" $global.imageRegistry) $repo }}{{ end -}}
{{- $tag = include "taskforge.appImageTag" . -}}
{{- end -}}
{{- $ref := printf "%s:%s" $repo (toString $tag) -}}
{{- if .image.digest }}{{ $ref = printf "%s@%s" $ref .image.digest }}{{ end -}}
{{- $ref -}}
{{- end -}}

{{/*
taskforge.appImageTag: the tag a TaskForge image runs: its own, else global.imageTag, else the
chart's appVersion. Also the service.version of the services' traces, so a trace names the code
that ran. Call like taskforge.image.
*/}}
{{- define "taskforge.appImageTag" -}}
{{- .image.tag | default .root.Values.global.imageTag | default .root.Chart.AppVersion | toString -}}
{{- end -}}

{{/* taskforge.imagePullPolicy: an image's own policy, else the global one. Call like taskforge.image. */}}
{{- define "taskforge.imagePullPolicy" -}}
{{- .image.pullPolicy | default .root.Values.global.imagePullPolicy -}}
{{- end -}}

{{/*
taskforge.metricsPort: the port of /metrics, /healthz and /readyz of a component (gateway, api,
worker, scheduler, or redis for the exporter sidecar), for Services, probes, NetworkPolicies and
monitors. Call: include "taskforge.metricsPort" (dict "root" $ "component" "worker")
*/}}
{{- define "taskforge.metricsPort" -}}
{{- if eq .component "redis" -}}
{{- .root.Values.redis.metrics.port -}}
{{- else -}}
{{- (index .root.Values .component).metricsPort -}}
{{- end -}}
{{- end -}}

{{/*
taskforge.hasApi: "true" when the cluster serves an API group/version (or kind), from Helm's
capabilities or capabilities.extraApiVersions (for offline rendering such as `helm lint`).
Call: include "taskforge.hasApi" (dict "root" $ "api" "keda.sh/v1alpha1")
*/}}
{{- define "taskforge.hasApi" -}}
{{- if or (.root.Capabilities.APIVersions.Has .api) (has .api .root.Values.capabilities.extraApiVersions) -}}true{{- end -}}
{{- end -}}

{{/* taskforge.redis.host: the Redis host the services and KEDA connect to (own Service or external). */}}
{{- define "taskforge.redis.host" -}}
{{- if .Values.redis.enabled -}}
{{- include "taskforge.componentName" (dict "root" . "component" "redis") -}}
{{- else -}}
{{- .Values.externalRedis.host -}}
{{- end -}}
{{- end -}}

{{/* taskforge.redis.port: the Redis port (own Service or external). */}}
{{- define "taskforge.redis.port" -}}
{{- if .Values.redis.enabled }}{{ .Values.redis.port }}{{ else }}{{ .Values.externalRedis.port }}{{ end -}}
{{- end -}}

{{/* taskforge.redis.database: the Redis database index (0 for the chart's own Redis). */}}
{{- define "taskforge.redis.database" -}}
{{- if .Values.redis.enabled }}0{{ else }}{{ .Values.externalRedis.database }}{{ end -}}
{{- end -}}

{{/* taskforge.redis.tls: "true" when Redis is reached over TLS (external Redis only). */}}
{{- define "taskforge.redis.tls" -}}
{{- if and (not .Values.redis.enabled) .Values.externalRedis.tls }}true{{ end -}}
{{- end -}}

{{/* taskforge.redis.address: host:port, as KEDA's redis-streams trigger wants it. */}}
{{- define "taskforge.redis.address" -}}
{{- printf "%s:%s" (include "taskforge.redis.host" .) (include "taskforge.redis.port" .) -}}
{{- end -}}

{{/* taskforge.redis.url: TASKFORGE_REDIS_URL, without the password (that comes from the Secret as TASKFORGE_REDIS_PASSWORD). */}}
{{- define "taskforge.redis.url" -}}
{{- printf "%s://%s/%s" (ternary "rediss" "redis" (eq (include "taskforge.redis.tls" .) "true")) (include "taskforge.redis.address" .) (include "taskforge.redis.database" .) -}}
{{- end -}}

{{/* taskforge.redis.secretName: the Secret holding the Redis password (existing or the chart's). */}}
{{- define "taskforge.redis.secretName" -}}
{{- $auth := ternary .Values.redis.auth .Values.externalRedis .Values.redis.enabled -}}
{{- $auth.existingSecret | default (include "taskforge.componentName" (dict "root" . "component" "redis")) -}}
{{- end -}}

{{/* taskforge.redis.secretKey: the key of the Redis password in that Secret. */}}
{{- define "taskforge.redis.secretKey" -}}
{{- if .Values.redis.enabled -}}
{{- ternary .Values.redis.auth.existingSecretPasswordKey "redis-password" (ne .Values.redis.auth.existingSecret "") -}}
{{- else -}}
{{- ternary .Values.externalRedis.existingSecretPasswordKey "redis-password" (ne .Values.externalRedis.existingSecret "") -}}
{{- end -}}
{{- end -}}

{{/* taskforge.redis.createSecret: "true" when the chart must render the Redis password Secret. */}}
{{- define "taskforge.redis.createSecret" -}}
{{- if .Values.redis.enabled -}}
{{- if not .Values.redis.auth.existingSecret }}true{{ end -}}
{{- else if and (not .Values.externalRedis.existingSecret) .Values.externalRedis.password -}}
true
{{- end -}}
{{- end -}}

{{/* taskforge.internalToken.secretName: the Secret with the gateway-to-api token (existing or the chart's). */}}
{{- define "taskforge.internalToken.secretName" -}}
{{- .Values.auth.internalToken.existingSecret | default (include "taskforge.componentName" (dict "root" . "component" "internal-token")) -}}
{{- end -}}

{{/* taskforge.internalToken.secretKey: the key of the token in that Secret. */}}
{{- define "taskforge.internalToken.secretKey" -}}
{{- ternary .Values.auth.internalToken.existingSecretKey "internal-token" (ne .Values.auth.internalToken.existingSecret "") -}}
{{- end -}}

{{/* taskforge.bootstrapKey.secretName: the Secret with the bootstrap API key (existing or the chart's). */}}
{{- define "taskforge.bootstrapKey.secretName" -}}
{{- .Values.auth.bootstrapApiKey.existingSecret | default (include "taskforge.componentName" (dict "root" . "component" "bootstrap-key")) -}}
{{- end -}}

{{/* taskforge.bootstrapKey.secretKey: the key of the API key in that Secret. */}}
{{- define "taskforge.bootstrapKey.secretKey" -}}
{{- ternary .Values.auth.bootstrapApiKey.existingSecretKey "api-key" (ne .Values.auth.bootstrapApiKey.existingSecret "") -}}
{{- end -}}

{{/* taskforge.handlers.secretName: the Secret with handler credentials: existing, the chart's, or "" for none. */}}
{{- define "taskforge.handlers.secretName" -}}
{{- $h := .Values.handlers -}}
{{- if $h.existingSecret -}}
{{- $h.existingSecret -}}
{{- else if or $h.webhook.secret $h.smtp.password $h.sms.apiKey -}}
{{- include "taskforge.componentName" (dict "root" . "component" "handlers") -}}
{{- end -}}
{{- end -}}

{{/*
taskforge.persistentSecret: a secret value that survives upgrades: the given value, else the one
already stored in the live Secret (lookup), else a new random one. `lookup` answers nothing under
`helm template`, so offline renders get a fresh value each time (use existingSecret for GitOps).
Call: include "taskforge.persistentSecret" (dict "root" $ "name" $secretName "key" "api-key" "value" $v "length" 40)
*/}}
{{- define "taskforge.persistentSecret" -}}
{{- if .value -}}
{{- .value -}}
{{- else -}}
{{- $live := lookup "v1" "Secret" .root.Release.Namespace .name -}}
{{- if and $live (hasKey ($live.data | default dict) .key) -}}
{{- index $live.data .key | b64dec -}}
{{- else -}}
{{- /* Drawn once per render: the checksum/secrets annotations include the Secret templates
again, and a second draw there would hash a value the Secret does not hold (every pod would
then roll at the first upgrade, Redis included). */ -}}
{{- if not (hasKey .root.Values "__taskforgeGenerated") -}}
{{- $_ := set .root.Values "__taskforgeGenerated" dict -}}
{{- end -}}
{{- $memo := index .root.Values "__taskforgeGenerated" -}}
{{- $slot := printf "%s/%s" .name .key -}}
{{- if not (hasKey $memo $slot) -}}
{{- $_ := set $memo $slot (randAlphaNum (int .length)) -}}
{{- end -}}
{{- index $memo $slot -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* taskforge.apiUrl: TASKFORGE_API_URL of the gateway: the api Service. */}}
{{- define "taskforge.apiUrl" -}}
{{- printf "http://%s:%v" (include "taskforge.componentName" (dict "root" . "component" "api")) .Values.api.service.port -}}
{{- end -}}

{{/* taskforge.gatewayUrl: the gateway Service's in-cluster URL (helm test, NOTES). */}}
{{- define "taskforge.gatewayUrl" -}}
{{- printf "http://%s:%v" (include "taskforge.componentName" (dict "root" . "component" "gateway")) .Values.gateway.service.port -}}
{{- end -}}

{{/*
taskforge.commonConfig: ConfigMap entries every service reads (TASKFORGE_* of CoreSettings);
the password stays out (it is a Secret). Call: include "taskforge.commonConfig" (dict "root" $ "component" "api")
*/}}
{{- define "taskforge.commonConfig" -}}
{{- $c := .root.Values.config -}}
TASKFORGE_ENV: {{ include "taskforge.envValue" $c.env | quote }}
TASKFORGE_REDIS_URL: {{ include "taskforge.redis.url" .root | quote }}
TASKFORGE_REDIS_SOCKET_TIMEOUT_S: {{ include "taskforge.envValue" $c.redisSocketTimeoutSeconds | quote }}
TASKFORGE_LOG_LEVEL: {{ include "taskforge.envValue" $c.logLevel | quote }}
TASKFORGE_LOG_FORMAT: {{ include "taskforge.envValue" $c.logFormat | quote }}
TASKFORGE_METRICS_PORT: {{ include "taskforge.metricsPort" . | quote }}
TASKFORGE_TASK_TTL_S: {{ include "taskforge.envValue" $c.taskTtlSeconds | quote }}
TASKFORGE_DEAD_TTL_S: {{ include "taskforge.envValue" $c.deadTtlSeconds | quote }}
TASKFORGE_IDEMPOTENCY_TTL_S: {{ include "taskforge.envValue" $c.idempotencyTtlSeconds | quote }}
TASKFORGE_MAX_RETRIES: {{ include "taskforge.envValue" $c.maxRetries | quote }}
TASKFORGE_BACKOFF_KIND: {{ include "taskforge.envValue" $c.backoff.kind | quote }}
TASKFORGE_BACKOFF_BASE_S: {{ include "taskforge.envValue" $c.backoff.baseSeconds | quote }}
TASKFORGE_BACKOFF_CAP_S: {{ include "taskforge.envValue" $c.backoff.capSeconds | quote }}
TASKFORGE_BACKOFF_JITTER: {{ include "taskforge.envValue" $c.backoff.jitter | quote }}
TASKFORGE_MAX_PAYLOAD_BYTES: {{ include "taskforge.envValue" $c.maxPayloadBytes | quote }}
TASKFORGE_MAX_RESULT_BYTES: {{ include "taskforge.envValue" $c.maxResultBytes | quote }}
TASKFORGE_MAX_QUEUES: {{ include "taskforge.envValue" $c.maxQueues | quote }}
{{- with $c.queuePattern }}
TASKFORGE_QUEUE_PATTERN: {{ . | quote }}
{{- end }}
TASKFORGE_METRICS_MAX_QUEUES: {{ include "taskforge.envValue" $c.metricsMaxQueues | quote }}
{{- end -}}

{{/*
taskforge.handlerConfig: ConfigMap entries of the handler settings (worker and api). Optional
strings are left out when empty so the services keep their None defaults; TASKFORGE_HANDLERS is
a comma list for both.
Call: include "taskforge.handlerConfig" (dict "root" $)
*/}}
{{- define "taskforge.handlerConfig" -}}
{{- $h := .root.Values.handlers -}}
{{- if $h.modules }}
TASKFORGE_HANDLERS: {{ join "," $h.modules | quote }}
{{- end }}
TASKFORGE_TASK_TIMEOUT_S: {{ include "taskforge.envValue" $h.taskTimeoutSeconds | quote }}
TASKFORGE_WEBHOOK_TIMEOUT_S: {{ include "taskforge.envValue" $h.webhook.timeoutSeconds | quote }}
TASKFORGE_HTTP_RESULT_BODY_CHARS: {{ include "taskforge.envValue" $h.webhook.resultBodyChars | quote }}
{{- with $h.egress.allowCidrs }}
TASKFORGE_HTTP_ALLOW_CIDRS: {{ join "," . | quote }}
{{- end }}
{{- with $h.egress.allowHosts }}
TASKFORGE_HTTP_ALLOW_HOSTS: {{ join "," . | quote }}
{{- end }}
TASKFORGE_SMTP_HOST: {{ include "taskforge.envValue" $h.smtp.host | quote }}
TASKFORGE_SMTP_PORT: {{ include "taskforge.envValue" $h.smtp.port | quote }}
{{- with $h.smtp.username }}
TASKFORGE_SMTP_USERNAME: {{ include "taskforge.envValue" . | quote }}
{{- end }}
TASKFORGE_SMTP_SECURITY: {{ include "taskforge.envValue" $h.smtp.security | quote }}
TASKFORGE_SMTP_VALIDATE_CERTS: {{ include "taskforge.envValue" $h.smtp.validateCerts | quote }}
TASKFORGE_SMTP_FROM: {{ include "taskforge.envValue" $h.smtp.from | quote }}
TASKFORGE_SMTP_TIMEOUT_S: {{ include "taskforge.envValue" $h.smtp.timeoutSeconds | quote }}
{{- with $h.sms.baseUrl }}
TASKFORGE_SMS_BASE_URL: {{ include "taskforge.envValue" . | quote }}
{{- end }}
{{- with $h.sms.from }}
TASKFORGE_SMS_FROM: {{ include "taskforge.envValue" . | quote }}
{{- end }}
TASKFORGE_SMS_TIMEOUT_S: {{ include "taskforge.envValue" $h.sms.timeoutSeconds | quote }}
{{- end -}}

{{/* taskforge.redisPasswordEnv: TASKFORGE_REDIS_PASSWORD from the Redis Secret (every service). */}}
{{- define "taskforge.redisPasswordEnv" -}}
- name: TASKFORGE_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "taskforge.redis.secretName" . }}
      key: {{ include "taskforge.redis.secretKey" . }}
{{- end -}}

{{/* taskforge.internalTokenEnv: TASKFORGE_INTERNAL_TOKEN from its Secret (gateway and api). */}}
{{- define "taskforge.internalTokenEnv" -}}
- name: TASKFORGE_INTERNAL_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "taskforge.internalToken.secretName" . }}
      key: {{ include "taskforge.internalToken.secretKey" . }}
{{- end -}}

{{/*
taskforge.handlerSecretEnv: the handler credentials as env from the handlers Secret. From an
existing Secret every key is optional (it may hold only some); from the chart's own Secret only
the keys it holds are referenced.
*/}}
{{- define "taskforge.handlerSecretEnv" -}}
{{- $h := .Values.handlers -}}
{{- $name := include "taskforge.handlers.secretName" . -}}
{{- $entries := list (list "TASKFORGE_WEBHOOK_SECRET" "webhook-secret" $h.webhook.secret) (list "TASKFORGE_SMTP_PASSWORD" "smtp-password" $h.smtp.password) (list "TASKFORGE_SMS_API_KEY" "sms-api-key" $h.sms.apiKey) -}}
{{- range $entries }}
{{- if or $h.existingSecret (index . 2) }}
- name: {{ index . 0 }}
  valueFrom:
    secretKeyRef:
      name: {{ $name }}
      key: {{ index . 1 }}
      {{- if $h.existingSecret }}
      optional: true
      {{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
taskforge.checksum: sha256 of the data of rendered templates, for pod annotations that roll the
pods when a ConfigMap or Secret they read changes (metadata-only changes roll nothing).
Call: include "taskforge.checksum" (dict "root" $ "files" (list "gateway/gateway-configmap.yaml"))
*/}}
{{- define "taskforge.checksum" -}}
{{- $root := .root -}}
{{- $parts := list -}}
{{- range .files -}}
{{- $rendered := include (print $root.Template.BasePath "/" .) $root | fromYaml | default dict -}}
{{- $parts = append $parts (toYaml (pick $rendered "data" "stringData")) -}}
{{- end -}}
{{- join "\n" $parts | sha256sum -}}
{{- end -}}

{{/* taskforge.podSecurityContext: the pod security context from values (restricted profile by default). */}}
{{- define "taskforge.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext -}}
{{- end -}}

{{/* taskforge.containerSecurityContext: the container security context from values (no privileges, read-only root). */}}
{{- define "taskforge.containerSecurityContext" -}}
{{- toYaml .Values.containerSecurityContext -}}
{{- end -}}

{{/*
taskforge.appProbes: startup, liveness and readiness probes of a TaskForge service on its metrics
port: /healthz is the process itself (never Redis), /readyz also checks Redis.
Call: include "taskforge.appProbes" $   (the port is the container port named "metrics")
*/}}
{{- define "taskforge.appProbes" -}}
{{- $p := .Values.probes -}}
startupProbe:
  httpGet:
    path: /healthz
    port: metrics
  periodSeconds: {{ $p.startup.periodSeconds }}
  timeoutSeconds: {{ $p.startup.timeoutSeconds }}
  failureThreshold: {{ $p.startup.failureThreshold }}
livenessProbe:
  httpGet:
    path: /healthz
    port: metrics
  periodSeconds: {{ $p.liveness.periodSeconds }}
  timeoutSeconds: {{ $p.liveness.timeoutSeconds }}
  failureThreshold: {{ $p.liveness.failureThreshold }}
readinessProbe:
  httpGet:
    path: /readyz
    port: metrics
  periodSeconds: {{ $p.readiness.periodSeconds }}
  timeoutSeconds: {{ $p.readiness.timeoutSeconds }}
  failureThreshold: {{ $p.readiness.failureThreshold }}
{{- end -}}

{{/* taskforge.tmpVolumeMount: /tmp on an emptyDir, since the root filesystem is read-only. */}}
{{- define "taskforge.tmpVolumeMount" -}}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/* taskforge.tmpVolume: the emptyDir behind /tmp, size-limited so a runaway writer cannot fill the node. */}}
{{- define "taskforge.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- end -}}

{{/*
taskforge.podSpecCommon: pod fields shared by every workload: service account (no token),
no service-link env flood, pull secrets, security context and placement from the component's
values. topologySpreadConstraints without a labelSelector get the component's selector labels.
Call: include "taskforge.podSpecCommon" (dict "root" $ "component" "gateway" "values" .Values.gateway)
*/}}
{{- define "taskforge.podSpecCommon" -}}
{{- $root := .root -}}
{{- $v := .values -}}
serviceAccountName: {{ include "taskforge.serviceAccountName" $root }}
automountServiceAccountToken: {{ $root.Values.serviceAccount.automountServiceAccountToken }}
enableServiceLinks: false
{{- with $root.Values.global.imagePullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
securityContext:
  {{- include "taskforge.podSecurityContext" $root | nindent 2 }}
{{- with $v.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- range . }}
  {{- $c := deepCopy . }}
  {{- if not (hasKey $c "labelSelector") }}
  {{- $_ := set $c "labelSelector" (dict "matchLabels" (include "taskforge.selectorLabels" (dict "root" $root "component" $.component) | fromYaml)) }}
  {{- end }}
  - {{- toYaml $c | nindent 4 }}
  {{- end }}
{{- end }}
{{- end -}}

{{/* taskforge.podLabels: a component's pod labels: the standard ones plus podLabels from values. */}}
{{- define "taskforge.podLabels" -}}
{{ include "taskforge.labels" (dict "root" .root "component" .component) }}
{{- with .values.podLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
taskforge.pdb: a PodDisruptionBudget for a component (maxUnavailable, never minAvailable, so a
single replica never blocks a node drain). Call: include "taskforge.pdb" (dict "root" $ "component" "api" "values" .Values.api)
*/}}
{{- define "taskforge.pdb" -}}
{{- $ctx := dict "root" .root "component" .component -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "taskforge.componentName" $ctx }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "taskforge.labels" $ctx | nindent 4 }}
spec:
  maxUnavailable: {{ .values.pdb.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "taskforge.selectorLabels" $ctx | nindent 6 }}
{{- end -}}

{{/*
taskforge.hpa: an autoscaling/v2 HorizontalPodAutoscaler on CPU for a Deployment.
Call: include "taskforge.hpa" (dict "root" $ "component" "gateway" "values" .Values.gateway)
*/}}
{{- define "taskforge.hpa" -}}
{{- $ctx := dict "root" .root "component" .component -}}
{{- $a := .values.autoscaling -}}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "taskforge.componentName" $ctx }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "taskforge.labels" $ctx | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "taskforge.componentName" $ctx }}
  minReplicas: {{ $a.minReplicas }}
  maxReplicas: {{ $a.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $a.targetCPUUtilizationPercentage }}
  {{- with $a.behavior }}
  behavior:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/*
taskforge.worker.terminationGracePeriodSeconds: the worker pods' grace period, derived from one
value (shutdownGraceSeconds + terminationGraceMarginSeconds) unless set explicitly, so Kubernetes
never SIGKILLs a worker that is still handing its tasks back. check-values refuses a period that
does not exceed shutdownGraceSeconds.
*/}}
{{- define "taskforge.worker.terminationGracePeriodSeconds" -}}
{{- $w := .Values.worker -}}
{{- if gt (int $w.terminationGracePeriodSeconds) 0 -}}
{{- int $w.terminationGracePeriodSeconds -}}
{{- else -}}
{{- add (int $w.shutdownGraceSeconds) (int $w.terminationGraceMarginSeconds) -}}
{{- end -}}
{{- end -}}

{{/*
taskforge.worker.envSources: envFrom and env of the worker container, shared with the
consumer-group Job so that Job reads exactly the queues and Redis the workers read.
*/}}
{{- define "taskforge.worker.envSources" -}}
envFrom:
  - configMapRef:
      name: {{ include "taskforge.componentName" (dict "root" . "component" "worker") }}
env:
  {{- include "taskforge.redisPasswordEnv" . | nindent 2 }}
  {{- with include "taskforge.handlerSecretEnv" . | trim }}
  {{- . | nindent 2 }}
  {{- end }}
  {{- with include "taskforge.tracingEnv" (dict "root" . "component" "worker") | trim }}
  {{- . | nindent 2 }}
  {{- end }}
  {{- with .Values.worker.extraEnv }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}

{{/*
taskforge.tracingEnv: the OpenTelemetry variables of one service (gateway, api, worker or
scheduler) when tracing.enabled, and nothing otherwise: without OTEL_EXPORTER_OTLP_ENDPOINT the
services record and export no spans. K8S_POD_NAME comes first because Kubernetes expands
$(K8S_POD_NAME) in OTEL_RESOURCE_ATTRIBUTES only from variables defined above it. The sampler
argument is set only for the samplers that read it. extraEnv follows in every container, so it
may add further OTEL_* variables (OTEL_BSP_*, ...).
Call: include "taskforge.tracingEnv" (dict "root" $ "component" "gateway")
*/}}
{{- define "taskforge.tracingEnv" -}}
{{- $t := .root.Values.tracing -}}
{{- if $t.enabled }}
- name: K8S_POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: OTEL_SERVICE_NAME
  value: {{ printf "taskforge-%s" .component | quote }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ $t.endpoint | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: http/protobuf
- name: OTEL_EXPORTER_OTLP_TIMEOUT
  value: {{ include "taskforge.envValue" $t.timeoutSeconds | quote }}
- name: OTEL_TRACES_SAMPLER
  value: {{ $t.sampler | quote }}
{{- if hasSuffix "traceidratio" $t.sampler }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ include "taskforge.envValue" $t.samplerArg | quote }}
{{- end }}
{{- with $t.headersSecret.name }}
- name: OTEL_EXPORTER_OTLP_HEADERS
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $t.headersSecret.key }}
{{- end }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ include "taskforge.tracing.resourceAttributes" . | quote }}
{{- end }}
{{- end -}}

{{/*
taskforge.tracing.resourceAttributes: OTEL_RESOURCE_ATTRIBUTES as sorted k=v pairs:
tracing.resourceAttributes, then what the chart knows better than a value could (namespace, pod,
the image tag that runs, tracing.environment), which wins over a user key of the same name.
Call: include "taskforge.tracing.resourceAttributes" (dict "root" $ "component" "api")
*/}}
{{- define "taskforge.tracing.resourceAttributes" -}}
{{- $root := .root -}}
{{- $t := $root.Values.tracing -}}
{{- $attrs := dict -}}
{{- range $name, $value := $t.resourceAttributes }}
{{- $_ := set $attrs $name (include "taskforge.envValue" $value) }}
{{- end }}
{{- $_ := set $attrs "k8s.namespace.name" $root.Release.Namespace }}
{{- $_ := set $attrs "k8s.pod.name" "$(K8S_POD_NAME)" }}
{{- $image := (index $root.Values .component).image }}
{{- $_ := set $attrs "service.version" (include "taskforge.appImageTag" (dict "root" $root "image" $image)) }}
{{- with $t.environment }}
{{- $_ := set $attrs "deployment.environment.name" . }}
{{- end }}
{{- $pairs := list }}
{{- range $name := keys $attrs | sortAlpha }}
{{- $pairs = append $pairs (printf "%s=%s" $name (index $attrs $name)) }}
{{- end }}
{{- join "," $pairs -}}
{{- end -}}

{{/*
taskforge.tracing.port: the TCP port of tracing.endpoint (its explicit port, else 443 for https
and 80 for http), for the egress rule towards the collector.
*/}}
{{- define "taskforge.tracing.port" -}}
{{- $url := urlParse .Values.tracing.endpoint -}}
{{- $port := regexFind ":[0-9]+$" $url.host | trimPrefix ":" -}}
{{- $port | default (ternary "443" "80" (eq $url.scheme "https")) -}}
{{- end -}}

{{/*
taskforge.keda.redisAddress: the Redis address as the KEDA operator must dial it. The operator
runs in its own namespace, where the chart Service's short name resolves to nothing (or to
another namespace's Redis), so the chart's Redis is named <service>.<namespace>.svc (the cluster
domain left to the search path). An external Redis is used as written.
*/}}
{{- define "taskforge.keda.redisAddress" -}}
{{- if .Values.redis.enabled -}}
{{- printf "%s.%s.svc:%s" (include "taskforge.redis.host" .) .Release.Namespace (include "taskforge.redis.port" .) -}}
{{- else -}}
{{- include "taskforge.redis.address" . -}}
{{- end -}}
{{- end -}}

{{/*
taskforge.keda.connection: where KEDA's redis-streams triggers connect: the same host, port,
database and TLS setting as the services' TASKFORGE_REDIS_URL.
*/}}
{{- define "taskforge.keda.connection" -}}
address: {{ include "taskforge.keda.redisAddress" . | quote }}
databaseIndex: {{ include "taskforge.redis.database" . | quote }}
{{- if include "taskforge.redis.tls" . }}
enableTLS: "true"
{{- end }}
{{- end -}}

{{/*
taskforge.networkPolicy.metricsIngress: an ingress rule opening a metrics port to the
monitoring namespaces only. Call: include "taskforge.networkPolicy.metricsIngress" (dict "root" $ "port" 9100)
*/}}
{{- define "taskforge.networkPolicy.metricsIngress" -}}
- from:
    - namespaceSelector:
        {{- toYaml .root.Values.monitoring.namespaceSelector | nindent 8 }}
  ports:
    - port: {{ .port }}
      protocol: TCP
{{- end -}}

{{/*
taskforge.networkPolicy.egress: the egress side of a TaskForge pod's policy when
networkPolicy.restrictEgress is on: DNS, Redis (the chart's pods or the external port), the api
for the gateway, the trace collector's port when tracing.enabled, and networkPolicy.extraEgress.
Renders nothing when egress is not restricted.
Call: include "taskforge.networkPolicy.egress" (dict "root" $ "component" "gateway")
*/}}
{{- define "taskforge.networkPolicy.egress" -}}
{{- $root := .root -}}
{{- if $root.Values.networkPolicy.restrictEgress }}
egress:
  - ports:
      - port: 53
        protocol: UDP
      - port: 53
        protocol: TCP
  {{- if $root.Values.redis.enabled }}
  - to:
      - podSelector:
          matchLabels:
            {{- include "taskforge.selectorLabels" (dict "root" $root "component" "redis") | nindent 12 }}
    ports:
      - port: {{ $root.Values.redis.port }}
        protocol: TCP
  {{- else }}
  - ports:
      - port: {{ $root.Values.externalRedis.port }}
        protocol: TCP
  {{- end }}
  {{- if eq .component "gateway" }}
  - to:
      - podSelector:
          matchLabels:
            {{- include "taskforge.selectorLabels" (dict "root" $root "component" "api") | nindent 12 }}
    ports:
      - port: {{ $root.Values.api.port }}
        protocol: TCP
  {{- end }}
  {{- if $root.Values.tracing.enabled }}
  - ports:
      - port: {{ include "taskforge.tracing.port" $root }}
        protocol: TCP
    {{- with $root.Values.tracing.egressTo }}
    to:
      {{- toYaml . | nindent 6 }}
    {{- end }}
  {{- end }}
  {{- with $root.Values.networkPolicy.extraEgress }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}
{{- end -}}

{{/*
taskforge.networkPolicy.policyTypes: Ingress, plus Egress when networkPolicy.restrictEgress is on.
*/}}
{{- define "taskforge.networkPolicy.policyTypes" -}}
policyTypes:
  - Ingress
  {{- if .Values.networkPolicy.restrictEgress }}
  - Egress
  {{- end }}
{{- end -}}

{{/*
taskforge.envValue: a value as an environment string. Helm reads every YAML number as a float64,
which prints 1048576 as "1.048576e+06"; whole numbers are printed as integers instead.
Call: include "taskforge.envValue" .Values.config.maxPayloadBytes
*/}}
{{- define "taskforge.envValue" -}}
{{- if kindIs "float64" . -}}
{{- if eq . (floor .) }}{{ int64 . }}{{ else }}{{ . }}{{ end -}}
{{- else -}}
{{- toString . -}}
{{- end -}}
{{- end -}}
