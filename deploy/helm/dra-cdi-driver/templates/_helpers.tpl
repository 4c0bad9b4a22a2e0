{{/* The chart's name, or nameOverride. */}}
{{- define "dra-cdi-driver.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name when it already contains the chart name. */}}
{{- define "dra-cdi-driver.fullname" -}}
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

{{- define "dra-cdi-driver.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "dra-cdi-driver.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dra-cdi-driver.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "dra-cdi-driver.labels" -}}
helm.sh/chart: {{ include "dra-cdi-driver.chart" . }}
{{ include "dra-cdi-driver.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "dra-cdi-driver.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "dra-cdi-driver.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The user name the API server gives the driver's requests (its pods' tokens). */}}
{{- define "dra-cdi-driver.serviceAccountUser" -}}
{{- printf "system:serviceaccount:%s:%s" .Release.Namespace (include "dra-cdi-driver.serviceAccountName" .) }}
{{- end }}

{{/* Host dirs; the container sees them at the same paths, because the driver tells the
kubelet where its DRA socket is and the kubelet dials that path on the host. */}}
{{- define "dra-cdi-driver.kubeletDir" -}}
{{- .Values.kubeletDir | trimSuffix "/" }}
{{- end }}
{{- define "dra-cdi-driver.registrarDir" -}}
{{- printf "%s/plugins_registry" (include "dra-cdi-driver.kubeletDir" .) }}
{{- end }}
{{- define "dra-cdi-driver.pluginDir" -}}
{{- printf "%s/plugins/%s" (include "dra-cdi-driver.kubeletDir" .) .Values.driverName }}
{{- end }}
