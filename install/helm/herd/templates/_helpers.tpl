{{- define "herd.labels" -}}
app.kubernetes.io/name: herd
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{- define "herd.selectorLabels" -}}
app.kubernetes.io/name: herd
app.kubernetes.io/component: controller
{{- end }}
