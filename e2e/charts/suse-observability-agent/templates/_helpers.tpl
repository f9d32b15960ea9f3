{{- define "agent.clusterName" -}}
{{ required "stackstate.cluster.name is required: the name this cluster gets in SUSE Observability" .Values.stackstate.cluster.name }}
{{- end }}

{{- define "agent.url" -}}
{{ required "stackstate.url is required: the SUSE Observability receiver URL" .Values.stackstate.url }}
{{- end }}

{{- define "agent.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{- define "agent.secretName" -}}
{{ .Release.Name }}-secrets
{{- end }}
