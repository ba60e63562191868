{{/* Names and labels shared by every template. */}}

{{- define "llmops.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "llmops.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "llmops.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llmops.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "llmops.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "llmops.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: llmops-operator
app.kubernetes.io/component: operator
{{- end }}

{{- define "llmops.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "llmops.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "llmops.peeringName" -}}
{{- default (include "llmops.fullname" .) .Values.peering.name }}
{{- end }}

{{- define "llmops.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* A workload image: its full reference from values, else <registry>/<name>:<tag>. */}}
{{- define "llmops.workloadImage" -}}
{{- $images := .root.Values.config.workloadImages }}
{{- $explicit := get $images .name }}
{{- if $explicit }}
{{- $explicit }}
{{- else }}
{{- printf "%s/%s:%s" $images.registry .name (default .root.Chart.AppVersion $images.tag) }}
{{- end }}
{{- end }}

{{/* Refuse settings that cannot work, with a message that says what to change. */}}
{{- define "llmops.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.peering.enabled) }}
{{- fail "replicaCount > 1 needs peering.enabled=true: without leader election every replica would reconcile" }}
{{- end }}
{{- if eq (int .Values.ports.metrics) (int .Values.ports.health) }}
{{- fail "ports.metrics and ports.health must differ" }}
{{- end }}
{{- end }}
