{{/*
The hook annotations of openstack-helm's Jobs that run after an install or upgrade
(db-sync, ks-user...): `helm.sh/hook: post-install,post-upgrade`, replaced before each run.
  annotations:
{{ tuple $envAll | include "helm-toolkit.snippets.hook_job_annotations" | indent 4 }}
*/}}
{{- define "helm-toolkit.snippets.hook_job_annotations" -}}
helm.sh/hook: post-install,post-upgrade
helm.sh/hook-weight: "-5"
helm.sh/hook-delete-policy: before-hook-creation
{{- end -}}

{{/*
A hook Job of a service: name, image, command; rendered only when .Values.manifests.<switch>.
  {{ dict "envAll" . "switch" "job_db_sync" "name" "keystone-db-sync" "image" "keystone_db_sync"
          "application" "keystone" "command" (list "keystone-manage" "db_sync")
     | include "helm-toolkit.manifests.job_hook" }}
*/}}
{{- define "helm-toolkit.manifests.job_hook" -}}
{{- $envAll := index . "envAll" -}}
{{- if index $envAll.Values.manifests (index . "switch") }}
---
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ index . "name" }}
  labels:
{{ tuple $envAll (index . "application") (index . "name" | trimPrefix (printf "%s-" (index . "application"))) | include "helm-toolkit.snippets.kubernetes_metadata_labels" | indent 4 }}
  annotations:
{{ tuple $envAll | include "helm-toolkit.snippets.hook_job_annotations" | indent 4 }}
spec:
  backoffLimit: {{ $envAll.Values.jobs.backoff_limit | default 6 }}
  template:
    metadata:
      labels:
{{ tuple $envAll (index . "application") (index . "name" | trimPrefix (printf "%s-" (index . "application"))) | include "helm-toolkit.snippets.kubernetes_metadata_labels" | indent 8 }}
    spec:
      restartPolicy: OnFailure
      containers:
        - name: {{ index . "name" }}
{{ tuple $envAll (index . "image") | include "helm-toolkit.snippets.image" | indent 10 }}
          command:
{{ index . "command" | toYaml | indent 12 }}
{{- end }}
{{- end -}}
