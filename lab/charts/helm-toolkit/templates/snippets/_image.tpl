{{/*
Image and pull policy of a container, from .Values.images.tags.<image>:
  {{ tuple $envAll "keystone_api" | include "helm-toolkit.snippets.image" | indent 10 }}
*/}}
{{- define "helm-toolkit.snippets.image" -}}
{{- $envAll := index . 0 -}}
{{- $image := index . 1 -}}
{{- $tag := index $envAll.Values.images.tags $image -}}
{{- if not $tag }}{{ fail (printf "images.tags.%s is not set" $image) }}{{ end -}}
image: {{ $tag | quote }}
imagePullPolicy: {{ $envAll.Values.images.pull_policy }}
{{- end -}}
