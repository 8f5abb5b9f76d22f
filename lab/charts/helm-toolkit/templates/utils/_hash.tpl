{{/*
sha256 of another template of the same chart, rendered: a pod annotation that changes (and so rolls
the pods) when the rendered ConfigMap/Secret changes.
  configmap-etc-hash: {{ tuple "configmap-etc.yaml" . | include "helm-toolkit.utils.hash" }}
*/}}
{{- define "helm-toolkit.utils.hash" -}}
{{- $name := index . 0 -}}
{{- $context := index . 1 -}}
{{- $template := printf "%s/%s" (dir $context.Template.Name) $name -}}
{{- include $template $context | sha256sum | quote -}}
{{- end -}}
