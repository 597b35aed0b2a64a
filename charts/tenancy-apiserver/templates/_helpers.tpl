{{/* The access mode, checked: a typo must not install a server that refuses to start. */}}
{{- define "tenancy-apiserver.accessMode" -}}
{{- if not (has .Values.accessMode (list "rbac" "sar")) -}}
{{- fail (printf "accessMode must be rbac or sar, not %q" (toString .Values.accessMode)) -}}
{{- end -}}
{{- .Values.accessMode -}}
{{- end -}}

{{/* Whether the management cluster's namespaces are spaces, checked. */}}
{{- define "tenancy-apiserver.localSpaces" -}}
{{- if not (kindIs "bool" .Values.localSpaces) -}}
{{- fail (printf "localSpaces must be true or false, not %q" (toString .Values.localSpaces)) -}}
{{- end -}}
{{- .Values.localSpaces -}}
{{- end -}}

{{/* The certificate mode, checked. */}}
{{- define "tenancy-apiserver.certMode" -}}
{{- $mode := .Values.certificates.mode -}}
{{- if not (has $mode (list "existingSecret" "certManager" "selfSigned")) -}}
{{- fail (printf "certificates.mode must be existingSecret, certManager or selfSigned, not %q" (toString $mode)) -}}
{{- end -}}
{{- $mode -}}
{{- end -}}

{{/* The DNS names of the serving certificate: the Service's names, as `tenancy-apiserver certs` writes them. */}}
{{- define "tenancy-apiserver.serviceNames" -}}
{{- $ns := .Release.Namespace -}}
{{- toJson (list (printf "tenancy-apiserver.%s.svc" $ns) (printf "tenancy-apiserver.%s.svc.cluster.local" $ns) (printf "tenancy-apiserver.%s" $ns) "tenancy-apiserver") -}}
{{- end -}}
