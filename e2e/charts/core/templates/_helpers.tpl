{{- define "neuvector.labels" -}}
chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
release: {{ .Release.Name }}
heritage: {{ .Release.Service }}
{{- end }}

{{- define "neuvector.controller.image" -}}
{{ .Values.registry }}/{{ .Values.controller.image.repository }}:{{ .Values.tag | default .Chart.AppVersion }}
{{- end }}
