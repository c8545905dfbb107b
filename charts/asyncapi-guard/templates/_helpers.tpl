{{/* Names */}}
{{- define "asyncapi-guard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "asyncapi-guard.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "asyncapi-guard.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "asyncapi-guard.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "asyncapi-guard.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "asyncapi-guard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "asyncapi-guard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "asyncapi-guard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "asyncapi-guard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "asyncapi-guard.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "asyncapi-guard.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The Secret holding the serving certificate. */}}
{{- define "asyncapi-guard.tlsSecret" -}}
{{- if eq .Values.certificates.mode "existingSecret" }}
{{- required "certificates.existingSecret.name is required in existingSecret mode" .Values.certificates.existingSecret.name }}
{{- else }}
{{- printf "%s-tls" (include "asyncapi-guard.fullname" .) }}
{{- end }}
{{- end }}

{{/* The Service's DNS names, for the serving certificate. */}}
{{- define "asyncapi-guard.dnsNames" -}}
{{- $svc := include "asyncapi-guard.fullname" . }}
{{- $ns := .Release.Namespace }}
{{- list (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) | toJson }}
{{- end }}

{{/* Whether the pods talk to the API server (and need a service-account token). */}}
{{- define "asyncapi-guard.needsApi" -}}
{{- if or (eq .Values.certificates.mode "selfManaged") .Values.audit.enabled .Values.exceptions.enabled }}true{{ end }}
{{- end }}

{{/* Namespaces where exceptions count: as configured, or the release's own. */}}
{{- define "asyncapi-guard.exceptionNamespaces" -}}
{{- if .Values.exceptions.namespaces }}
{{- .Values.exceptions.namespaces | uniq | toJson }}
{{- else }}
{{- list .Release.Namespace | toJson }}
{{- end }}
{{- end }}

{{/* The configuration file, from .Values.policy and the Kubernetes values. */}}
{{- /* Namespaces no webhook entry matches: the system ones, the release's own, and the configured ones. */}}
{{- define "asyncapi-guard.excludedNamespaces" -}}
{{- concat (list "kube-system" "kube-public" "kube-node-lease" .Release.Namespace) .Values.webhook.excludeNamespaces | uniq | toJson }}
{{- end }}

{{- define "asyncapi-guard.config" -}}
{{- $production := dict "allServers" .Values.policy.production.allServers }}
{{- range $key := list "include" "exclude" "tags" }}
{{- with index $.Values.policy.production $key }}
{{- $_ := set $production $key . }}
{{- end }}
{{- end }}
{{- $kinds := list }}
{{- range .Values.extraKinds }}
{{- $kinds = append $kinds (dict "group" .group "kind" .kind "field" .field) }}
{{- end }}
{{- $config := dict
      "mode" .Values.policy.mode
      "rules" .Values.policy.rules
      "production" $production
      "limits" .Values.policy.limits
      "kubernetes" (dict "inspectAllConfigMaps" .Values.inspectAllConfigMaps "kinds" $kinds
                         "namespaces" (dict "defaultMode" .Values.webhook.defaultMode "exclude" (include "asyncapi-guard.excludedNamespaces" . | fromJsonArray)))
      "exceptions" (dict "namespaces" (include "asyncapi-guard.exceptionNamespaces" . | fromJsonArray)
                         "maxDuration" .Values.exceptions.maxDuration "warnBefore" .Values.exceptions.warnBefore) }}
{{- toYaml $config }}
{{- end }}
