{{/*
One DaemonSet per per-node override, as helm-toolkit's utils.daemonset_overrides renders them.

Overrides live under .Values.conf.overrides.<chart>_<daemonset> (e.g. nova_compute):
  hosts:  [{name: <node name>, conf: {...}}]                 one DaemonSet pinned to that node
  labels: [{label: {key: k, values: [v]}, conf: {...}}]      one DaemonSet for the labelled nodes
                                                             (a later label wins over an earlier one)
and the "default" DaemonSet runs everywhere else. Each DaemonSet gets its own config (the chart's
config template rendered with `conf` deep-merged with the override's), mounted in place of the
chart's, and a configmap-etc-hash annotation of it. Names are generated as helm-toolkit does:
<chart>-<daemonset>-<host name|label key|default>, lower case, "_" -> "-", plus "-" and 8 hex digits
of the sha256 of the node affinity whenever the daemonset has overrides at all; the container is
renamed to the same name.

  {{ list "compute" $daemonsetYaml "nova.configmap.etc" "nova-etc" . | include "helm-toolkit.utils.daemonset_overrides" }}

$daemonsetYaml is the DaemonSet as a dict (fromYaml of the chart's own template); the config
template is called with (list <name> <context with the merged Values>).
*/}}
{{- define "helm-toolkit.utils.daemonset_overrides" }}
{{- $daemonset := index . 0 }}
{{- $daemonsetYaml := index . 1 }}
{{- $configmapInclude := index . 2 }}
{{- $configmapName := index . 3 }}
{{- $envAll := index . 4 }}
{{- $root := printf "%s_%s" $envAll.Chart.Name $daemonset }}
{{- $overrides := dict }}
{{- $hasOverrides := false }}
{{- if and (hasKey $envAll.Values.conf "overrides") (hasKey ($envAll.Values.conf.overrides | default dict) $root) }}
{{- $overrides = index $envAll.Values.conf.overrides $root | default dict }}
{{- $hasOverrides = true }}
{{- end }}
{{- $hosts := $overrides.hosts | default list }}
{{- $labels := $overrides.labels | default list }}
{{- $hostsNotIn := list }}
{{- range $host := $hosts }}
{{- $hostsNotIn = append $hostsNotIn (dict "key" "kubernetes.io/hostname" "operator" "NotIn" "values" (list $host.name)) }}
{{- end }}
{{- $entries := list }}
{{- range $host := $hosts }}
{{- $expr := list (dict "key" "kubernetes.io/hostname" "operator" "In" "values" (list $host.name)) }}
{{- $entries = append $entries (dict "name" $host.name "conf" ($host.conf | default dict) "matchExpressions" $expr) }}
{{- end }}
{{- range $i, $label := $labels }}
{{- $expr := list (merge (dict "operator" "In") (omit $label.label "NULL")) }}
{{- range $later := slice $labels (add1 $i | int) }}
{{- $expr = append $expr (merge (dict "operator" "NotIn") (omit $later.label "NULL")) }}
{{- end }}
{{- $expr = concat $expr $hostsNotIn }}
{{- $entries = append $entries (dict "name" $label.label.key "conf" ($label.conf | default dict) "matchExpressions" $expr) }}
{{- end }}
{{- $default := dict "name" "default" "conf" dict }}
{{- if $hasOverrides }}
{{- $expr := list }}
{{- range $label := $labels }}
{{- $expr = append $expr (merge (dict "operator" "NotIn") (omit $label.label "NULL")) }}
{{- end }}
{{- $_ := set $default "matchExpressions" (concat $expr $hostsNotIn) }}
{{- end }}
{{- $entries = append $entries $default }}
{{- $baseConf := omit $envAll.Values.conf "overrides" }}
{{- range $entry := $entries }}
{{- $name := printf "%s-%s" $root $entry.name | lower | replace "_" "-" }}
{{- if hasKey $entry "matchExpressions" }}
{{- $name = printf "%s-%s" $name ($entry.matchExpressions | quote | sha256sum | trunc 8) }}
{{- end }}
{{- $conf := merge (deepCopy $entry.conf) (deepCopy $baseConf) }}
{{- $values := merge (dict "conf" $conf) (omit $envAll.Values "conf") }}
{{- $nodeContext := dict "Values" $values "Release" $envAll.Release "Chart" $envAll.Chart "Capabilities" $envAll.Capabilities "Template" $envAll.Template }}
{{- $cmap := list $name $nodeContext | include $configmapInclude }}
{{- $ds := deepCopy $daemonsetYaml }}
{{- $_ := set $ds.metadata "name" $name }}
{{- $container := first $ds.spec.template.spec.containers }}
{{- $_ := set $container "name" $name }}
{{- $_ := set $ds.spec.template.spec "containers" (list $container) }}
{{- range $volume := $ds.spec.template.spec.volumes | default list }}
{{- if and (hasKey $volume "configMap") (eq $volume.configMap.name $configmapName) }}
{{- $_ := set $volume.configMap "name" $name }}
{{- end }}
{{- if and (hasKey $volume "secret") (eq $volume.secret.secretName $configmapName) }}
{{- $_ := set $volume.secret "secretName" $name }}
{{- end }}
{{- end }}
{{- if hasKey $entry "matchExpressions" }}
{{- $terms := list (dict "matchExpressions" $entry.matchExpressions) }}
{{- $affinity := dict "nodeAffinity" (dict "requiredDuringSchedulingIgnoredDuringExecution" (dict "nodeSelectorTerms" $terms)) }}
{{- $_ := set $ds.spec.template.spec "affinity" $affinity }}
{{- end }}
{{- if not $ds.spec.template.metadata.annotations }}{{ $_ := set $ds.spec.template.metadata "annotations" dict }}{{ end }}
{{- $_ := set $ds.spec.template.metadata.annotations "configmap-etc-hash" ($cmap | quote | sha256sum) }}
---
{{ $cmap }}
---
{{ $ds | toYaml }}
{{- end }}
{{- end }}
