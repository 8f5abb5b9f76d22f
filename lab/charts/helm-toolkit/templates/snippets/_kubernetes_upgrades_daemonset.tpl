{{/*
A DaemonSet's update strategy from .Values.pod.lifecycle.upgrades.daemonsets:
  pod_replacement_strategy (RollingUpdate|OnDelete) for all, and per component
  <component>.{enabled,min_ready_seconds,max_unavailable}.
  {{ tuple $envAll "compute" | include "helm-toolkit.snippets.kubernetes_upgrades_daemonset" | indent 2 }}
*/}}
{{- define "helm-toolkit.snippets.kubernetes_upgrades_daemonset" -}}
{{- $envAll := index . 0 -}}
{{- $component := index . 1 -}}
{{- $daemonsets := $envAll.Values.pod.lifecycle.upgrades.daemonsets -}}
{{- $strategy := $daemonsets.pod_replacement_strategy -}}
{{- with index $daemonsets $component -}}
{{- if .enabled }}
minReadySeconds: {{ .min_ready_seconds }}
updateStrategy:
  type: {{ $strategy }}
  {{- if eq $strategy "RollingUpdate" }}
  rollingUpdate:
    maxUnavailable: {{ .max_unavailable }}
  {{- end }}
{{- end }}
{{- end }}
{{- end -}}
