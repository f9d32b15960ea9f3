{{- define "herd-insights.labels" -}}
app.kubernetes.io/name: herd-insights
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: herd
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end }}

{{/* A PromQL regular expression matching the Stack's namespaces exactly. */}}
{{- define "herd-insights.namespaces" -}}
{{- $quoted := list }}
{{- range .Values.namespaces }}{{ $quoted = append $quoted (regexQuoteMeta .) }}{{ end }}
{{- join "|" $quoted }}
{{- end }}

{{- define "herd-insights.title" -}}
{{ .Values.stack.namespace }}/{{ .Values.stack.name }}
{{- end }}
