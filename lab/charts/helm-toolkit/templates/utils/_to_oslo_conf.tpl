{{/*
An oslo.config INI file from a dict of sections: {section: {key: value}}; a list value is
written as repeated keys (oslo's MultiStrOpt).
  {{ include "helm-toolkit.utils.to_oslo_conf" .Values.conf.keystone | b64enc }}
*/}}
{{- define "helm-toolkit.utils.to_oslo_conf" -}}
{{- range $section, $values := . -}}
{{- if kindIs "map" $values }}
[{{ $section }}]
{{- range $key, $value := $values }}
{{- if kindIs "slice" $value }}
{{- range $value }}
{{ $key }} = {{ . }}
{{- end }}
{{- else }}
{{ $key }} = {{ $value }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}
