{{/* Name of the chart, or nameOverride. */}}
{{- define "strait.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's objects: release-chart, or fullnameOverride. */}}
{{- define "strait.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "strait.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "strait.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
strait.io/cluster: {{ .Values.gateway.cluster | quote }}
{{- end }}

{{/* Labels that select the gateway pods. */}}
{{- define "strait.selectorLabels" -}}
app.kubernetes.io/name: {{ include "strait.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end }}

{{/* The ServiceAccount's name. */}}
{{- define "strait.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "strait.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image reference; the tag defaults to the chart's appVersion. */}}
{{- define "strait.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Name of the ConfigMap holding the residency policy, or "" for none. */}}
{{- define "strait.policyConfigMap" -}}
{{- if .Values.residency.existingConfigMap }}
{{- .Values.residency.existingConfigMap }}
{{- else if .Values.residency.policy }}
{{- printf "%s-residency" (include "strait.fullname" .) }}
{{- end }}
{{- end }}

{{/*
The rules discovery needs, exactly docs/kubernetes.md#rbac (TestRBAC in
discovery/kube proves them enough and each one needed; the chart's tests
compare these with that list).
*/}}
{{- define "strait.rbacRules" -}}
- apiGroups: [""]
  resources: [services]
  verbs:
    - list   # informer: read the ports, type and selector of exported Services
    - watch  # informer: follow changes to them
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs:
    - list   # informer: read the endpoints of exported Services
    - watch  # informer: follow endpoints as pods come, go and turn ready
- apiGroups: [multicluster.x-k8s.io]
  resources: [serviceexports]
  verbs:
    - list   # informer: find the Services to export
    - watch  # informer: follow exports as they are created and deleted
- apiGroups: [multicluster.x-k8s.io]
  resources: [serviceexports/status]
  verbs:
    - update # set the Valid and Conflict conditions (with the object's resourceVersion; patch is not used)
- apiGroups: [multicluster.x-k8s.io]
  resources: [serviceimports]
  verbs:
    - get    # tell an existing ServiceImport of another owner from one the informer has not seen yet
    - list   # informer over the ServiceImports this gateway owns
    - watch  # put back owned ServiceImports that someone changed or deleted
    - create # write a ServiceImport for each imported service
    - update # keep its ports in step with the imports
    - delete # remove it when the import goes
{{- end }}

{{/* gateway.yaml: keys and meanings in docs/configuration.md. */}}
{{- define "strait.gatewayConfig" -}}
{{- $v := .Values -}}
cluster: {{ $v.gateway.cluster | quote }}
region: {{ $v.gateway.region | quote }}
{{- with $v.gateway.zone }}
zone: {{ . | quote }}
{{- end }}
{{- with $v.gateway.cloud }}
cloud: {{ . | quote }}
{{- end }}
trustDomain: {{ $v.gateway.trustDomain | quote }}
{{- with $v.gateway.advertise }}
advertise: {{ . | quote }}
{{- end }}
# Ports away from an Istio sidecar's (chart README, Ports).
listen:
  data: "0.0.0.0:{{ $v.ports.data }}"
  admin: "127.0.0.1:{{ $v.ports.admin }}"
  probes: "0.0.0.0:{{ $v.ports.probes }}"
  connect: {{ if $v.ports.connect }}"0.0.0.0:{{ $v.ports.connect }}"{{ else }}""{{ end }}
  passthrough: {{ if $v.ports.passthrough }}"0.0.0.0:{{ $v.ports.passthrough }}"{{ else }}""{{ end }}
tls:
  source: {{ $v.tls.source }}
  {{- if eq $v.tls.source "files" }}
  cert: /etc/strait/tls/{{ $v.tls.certKey }}
  key: /etc/strait/tls/{{ $v.tls.keyKey }}
  {{- end }}
  {{- if $v.tls.secretName }}
  ca: /etc/strait/tls/{{ $v.tls.caKey }}
  {{- end }}
  {{- if ne $v.tls.source "files" }}
  storage: /var/lib/strait/certificates
  {{- end }}
  {{- if eq $v.tls.source "ca" }}
  authority:
    servers: {{ toJson $v.tls.authority.servers }}
    tokenFile: /etc/strait/join-token/{{ $v.tls.authority.joinTokenSecret.key }}
  {{- end }}
  {{- if eq $v.tls.source "acme" }}
  acme:
    directory: {{ $v.tls.acme.directory | quote }}
    {{- with $v.tls.acme.email }}
    email: {{ . | quote }}
    {{- end }}
    agreeToTerms: {{ $v.tls.acme.agreeToTerms }}
    dnsSuffix: {{ $v.tls.acme.dnsSuffix | quote }}
    serverAuthAsClient: {{ $v.tls.acme.serverAuthAsClient }}
    challenges: [http-01]
    httpPort: {{ $v.tls.acme.httpPort }}
  {{- end }}
# gossip.key and gossip.advertise come from the pod's environment
# (STRAIT_GOSSIP_KEY from a Secret, STRAIT_GOSSIP_ADVERTISE the pod's IP).
gossip:
  bind: "0.0.0.0:{{ $v.ports.gossip }}"
  profile: {{ $v.gossip.profile }}
  join: {{ toJson $v.gossip.join }}
discovery:
  source: {{ $v.discovery.source }}
  {{- if eq $v.discovery.source "kubernetes" }}
  kubernetes:
    namespaces: {{ toJson $v.discovery.namespaces }}
    syncTimeout: {{ $v.discovery.syncTimeout }}
  {{- end }}
{{- if and (eq $v.discovery.source "static") $v.discovery.services }}
services:
{{ toYaml $v.discovery.services | indent 2 }}
{{- end }}
{{- with $v.imports }}
imports:
{{- range . }}
  - service: {{ .service | quote }}
    port: {{ .port }}
    listen: "0.0.0.0:{{ .listenPort }}"
    {{- with .namespace }}
    namespace: {{ . | quote }}
    {{- end }}
    {{- with .protocol }}
    protocol: {{ . }}
    {{- end }}
{{- end }}
{{- end }}
{{- if include "strait.policyConfigMap" . }}
residency:
  policy: /etc/strait/residency/{{ $v.residency.key }}
{{- end }}
{{- if $v.faults.enabled }}
faults:
  enabled: true
  maxLease: {{ $v.faults.maxLease }}
{{- end }}
log:
  level: {{ $v.gateway.log.level }}
  format: {{ $v.gateway.log.format }}
{{- end }}

{{/*
The Service of an imported service: <fullname>-<namespace>-<name>, which
the CoreDNS rewrite of NOTES.txt maps <name>.<namespace>.svc.clusterset.local
to. A name too long for a Service fails the install rather than being cut
short, which the rewrite could not follow.
*/}}
{{- define "strait.importServiceName" -}}
{{- $n := printf "%s-%s-%s" (include "strait.fullname" .root) .namespace .name -}}
{{- if gt (len $n) 63 -}}
{{- fail (printf "imports: the Service of %s/%s would be named %s, longer than 63 characters; shorten the release name or set fullnameOverride" .namespace .name $n) -}}
{{- end -}}
{{- $n -}}
{{- end }}
