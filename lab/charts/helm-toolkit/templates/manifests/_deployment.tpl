{{/*
(stackhop lab addition, not in openstack-helm's helm-toolkit) One Deployment of a service in the
layout of openstack-helm's own deployment-*.yaml templates, rendered only when .Values.manifests.<switch>:
labels release_group/application/component (pod and selector), pod.replicas.<key>,
pod.lifecycle.upgrades.deployments, extra pod labels pod.labels.<key> (the lab marks its pods for the
lab controller with these), image images.tags.<image>, extra pod annotations pod.annotations (a new
value of one replaces every pod, as `kubectl rollout restart` does), a configmap-etc-hash annotation of the
chart's configmap-etc.yaml, and that Secret (<application>-etc) mounted at
/etc/<application>/<application>.conf. "port" (optional) names the API's container port.

  {{ dict "envAll" . "switch" "deployment_api" "name" "placement-api" "application" "placement"
          "component" "api" "key" "api" "image" "placement" "port" 8778
     | include "helm-toolkit.manifests.deployment" }}

The lab controller takes the workload of a pod from its labels: <application>-<component>, so the
charts name each Deployment so.
*/}}
{{- define "helm-toolkit.manifests.deployment" -}}
{{- $envAll := index . "envAll" -}}
{{- if index $envAll.Values.manifests (index . "switch") }}
{{- $application := index . "application" }}
{{- $component := index . "component" }}
{{- $key := index . "key" }}
{{- $labels := tuple $envAll $application $component | include "helm-toolkit.snippets.kubernetes_metadata_labels" }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ index . "name" }}
  labels:
{{ $labels | indent 4 }}
spec:
  replicas: {{ index $envAll.Values.pod.replicas $key }}
  selector:
    matchLabels:
{{ $labels | indent 6 }}
{{ tuple $envAll $key | include "helm-toolkit.snippets.kubernetes_upgrades_deployment" | indent 2 }}
  template:
    metadata:
      labels:
{{ $labels | indent 8 }}
{{- with index ($envAll.Values.pod.labels | default dict) $key }}
{{ toYaml . | indent 8 }}
{{- end }}
      annotations:
        configmap-etc-hash: {{ tuple "configmap-etc.yaml" $envAll | include "helm-toolkit.utils.hash" }}
{{- with ($envAll.Values.pod.annotations | default dict) }}
{{ toYaml . | indent 8 }}
{{- end }}
    spec:
      containers:
        - name: {{ index . "name" }}
{{ tuple $envAll (index . "image") | include "helm-toolkit.snippets.image" | indent 10 }}
{{- with index . "port" }}
          ports:
            - name: api
              containerPort: {{ . }}
{{- end }}
          volumeMounts:
            - name: {{ $application }}-etc
              mountPath: /etc/{{ $application }}/{{ $application }}.conf
              subPath: {{ $application }}.conf
              readOnly: true
      volumes:
        - name: {{ $application }}-etc
          secret:
            secretName: {{ $application }}-etc
            defaultMode: 0444
{{- end }}
{{- end -}}

{{/*
(stackhop lab addition) The Service in front of an API Deployment (same labels as its pods).
  {{ dict "envAll" . "switch" "service_api" "name" "placement-api" "application" "placement"
          "component" "api" "port" 8778 | include "helm-toolkit.manifests.service" }}
*/}}
{{- define "helm-toolkit.manifests.service" -}}
{{- $envAll := index . "envAll" -}}
{{- if index $envAll.Values.manifests (index . "switch") }}
{{- $labels := tuple $envAll (index . "application") (index . "component") | include "helm-toolkit.snippets.kubernetes_metadata_labels" }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ index . "name" }}
  labels:
{{ $labels | indent 4 }}
spec:
  ports:
    - name: api
      port: {{ index . "port" }}
  selector:
{{ $labels | indent 4 }}
{{- end }}
{{- end -}}

{{/*
(stackhop lab addition) The Secret <application>-etc holding <application>.conf from .Values.conf.<application>.
  {{ dict "envAll" . "application" "placement" | include "helm-toolkit.manifests.configmap_etc" }}
*/}}
{{- define "helm-toolkit.manifests.configmap_etc" -}}
{{- $envAll := index . "envAll" -}}
{{- $application := index . "application" -}}
{{- if $envAll.Values.manifests.configmap_etc }}
---
apiVersion: v1
kind: Secret
metadata:
  name: {{ $application }}-etc
  labels:
{{ tuple $envAll $application "etc" | include "helm-toolkit.snippets.kubernetes_metadata_labels" | indent 4 }}
type: Opaque
data:
  {{ $application }}.conf: {{ include "helm-toolkit.utils.to_oslo_conf" (index $envAll.Values.conf $application) | b64enc }}
{{- end }}
{{- end -}}
