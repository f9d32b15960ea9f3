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
{{- with .Values.shard }}
herd.suse.com/shard: {{ . | quote }}
{{- end }}
{{- end }}

{{- define "herd.controllerName" -}}
{{- if .Values.shard }}herd-controller-{{ .Values.shard }}{{ else }}herd-controller{{ end }}
{{- end }}

{{- /* rancherNamespaces as a list: values.yaml gives a list, Rancher's install form
(questions.yaml) a comma-separated string. */ -}}
{{- define "herd.rancherNamespaces" -}}
{{- $namespaces := .Values.rancherNamespaces -}}
{{- if kindIs "string" $namespaces }}{{ $namespaces = splitList "," (nospace $namespaces) | compact }}{{ end -}}
{{- toJson $namespaces -}}
{{- end }}
