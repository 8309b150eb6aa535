{{/* Names and labels. */}}
{{- define "switchboard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "switchboard.fullname" -}}
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

{{- define "switchboard.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "switchboard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: include "switchboard.selector" (list . "signaling") */}}
{{- define "switchboard.selector" -}}
{{- $top := index . 0 -}}
app.kubernetes.io/name: {{ include "switchboard.name" $top }}
app.kubernetes.io/instance: {{ $top.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "switchboard.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "switchboard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "switchboard.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding master key, admin token and TURN secrets. */}}
{{- define "switchboard.secretName" -}}
{{- default (include "switchboard.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* Where the Redis and database URLs come from: a Secret of the user's, or the chart's. */}}
{{- define "switchboard.redisSecret" -}}
{{- default (include "switchboard.fullname" .) .Values.redis.existingSecret -}}
{{- end -}}
{{- define "switchboard.redisKey" -}}
{{- if .Values.redis.existingSecret -}}{{ .Values.redis.existingSecretKey }}{{- else -}}redis-url{{- end -}}
{{- end -}}
{{- define "switchboard.databaseSecret" -}}
{{- default (include "switchboard.fullname" .) .Values.database.existingSecret -}}
{{- end -}}
{{- define "switchboard.databaseKey" -}}
{{- if .Values.database.existingSecret -}}{{ .Values.database.existingSecretKey }}{{- else -}}database-url{{- end -}}
{{- end -}}

{{/* Does the chart's own Secret exist (anything not supplied by existing Secrets)? */}}
{{- define "switchboard.ownSecret" -}}
{{- if or (not .Values.secrets.existingSecret) (not .Values.redis.existingSecret) (not .Values.database.existingSecret) -}}true{{- end -}}
{{- end -}}

{{- define "switchboard.env.secretRef" -}}
- name: {{ index . 0 }}
  valueFrom:
    secretKeyRef:
      name: {{ index . 1 }}
      key: {{ index . 2 }}
{{- end -}}

{{/* Pod and container security: non-root (the image's uid), read-only root, no privileges. */}}
{{- define "switchboard.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}
{{- define "switchboard.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
{{- end -}}

{{/* Grace period of a signaling pod: longer than preStop + drain (+ flush + margin). */}}
{{- define "switchboard.gracePeriod" -}}
{{- $s := .Values.signaling -}}
{{- $min := add $s.preStopSleepSeconds $s.drainTimeoutSeconds -}}
{{- if $s.terminationGracePeriodSeconds -}}
{{- if le (int $s.terminationGracePeriodSeconds) (int $min) -}}
{{- fail (printf "signaling.terminationGracePeriodSeconds (%v) must be longer than preStopSleepSeconds + drainTimeoutSeconds (%v)" $s.terminationGracePeriodSeconds $min) -}}
{{- end -}}
{{- $s.terminationGracePeriodSeconds -}}
{{- else -}}
{{- add $min $s.auditFlushGraceSeconds 15 -}}
{{- end -}}
{{- end -}}

{{/* Relay port range "min-max" → list of the two numbers. */}}
{{- define "switchboard.portRange" -}}
{{- $parts := splitList "-" . -}}
{{- if ne (len $parts) 2 -}}{{- fail (printf "a port range is MIN-MAX, got %q" .) -}}{{- end -}}
{{- $lo := atoi (index $parts 0) -}}{{- $hi := atoi (index $parts 1) -}}
{{- if or (lt $lo 1024) (gt $hi 65535) (gt $lo $hi) -}}{{- fail (printf "bad port range %q" .) -}}{{- end -}}
{{- printf "%d %d" $lo $hi -}}
{{- end -}}
