{{/*
A Deployment's update strategy from .Values.pod.lifecycle.upgrades.deployments:
  revision_history, pod_replacement_strategy (RollingUpdate|Recreate),
  rolling_update.{max_unavailable,max_surge}, and (stackhop lab addition) progress_deadline_seconds.
  {{ tuple $envAll "api" | include "helm-toolkit.snippets.kubernetes_upgrades_deployment" | indent 2 }}
*/}}
{{- define "helm-toolkit.snippets.kubernetes_upgrades_deployment" -}}
{{- $envAll := index . 0 -}}
{{- $upgradeMap := $envAll.Values.pod.lifecycle.upgrades.deployments -}}
revisionHistoryLimit: {{ $upgradeMap.revision_history }}
{{- with $upgradeMap.progress_deadline_seconds }}
progressDeadlineSeconds: {{ . }}
{{- end }}
strategy:
  type: {{ $upgradeMap.pod_replacement_strategy }}
  {{- if eq $upgradeMap.pod_replacement_strategy "RollingUpdate" }}
  rollingUpdate:
    maxUnavailable: {{ $upgradeMap.rolling_update.max_unavailable }}
    maxSurge: {{ $upgradeMap.rolling_update.max_surge }}
  {{- end }}
{{- end -}}
