{{/* The config of one nova-compute DaemonSet (called per override with its merged values). */}}
{{- define "nova.configmap.etc" }}
{{- $name := index . 0 }}
{{- $envAll := index . 1 }}
apiVersion: v1
kind: Secret
metadata:
  name: {{ $name }}
type: Opaque
data:
  nova.conf: {{ include "helm-toolkit.utils.to_oslo_conf" $envAll.Values.conf.nova | b64enc }}
{{- end }}
