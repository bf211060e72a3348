{{/* Names */}}
{{- define "roster.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "roster.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "roster.secretName" -}}
{{- default (printf "%s-secrets" (include "roster.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "roster.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "roster.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "roster.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Labels; call with (dict "root" $ "component" "access") */}}
{{- define "roster.selectorLabels" -}}
app.kubernetes.io/name: {{ include "roster.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end -}}

{{- define "roster.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{ include "roster.selectorLabels" . }}
app.kubernetes.io/part-of: roster
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end -}}

{{/*
What each service is probed with, and whom it calls (the NetworkPolicies
let it reach exactly these).
*/}}
{{- define "roster.componentTable" -}}
user-registry:
  health: roster.v1.UserRegistry
  calls: [access, invitations]
access:
  health: roster.v1.UserAccess
  calls: [user-registry, sessions, invitations]
sessions:
  health: roster.v1.Authentication
  calls: [user-registry, access]
invitations:
  health: roster.v1.UserInvitationRegistry
  calls: [access, user-registry]
notifications:
  health: roster.v1.NotificationService
  calls: [access, user-registry, invitations]
all:
  health: roster.v1.UserAccess
  calls: []
{{- end -}}

{{/* The components this release runs: {"names": [...]} as YAML. */}}
{{- define "roster.components" -}}
{{- $names := list -}}
{{- if eq .Values.mode "all" -}}
{{- $names = list "all" -}}
{{- else -}}
{{- range $name := list "user-registry" "access" "sessions" "invitations" "notifications" -}}
{{- if (index $.Values.components $name).enabled -}}
{{- $names = append $names $name -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- dict "names" $names | toYaml -}}
{{- end -}}

{{/* Where a peer's internal port is reached: (dict "root" $ "component" "access") */}}
{{- define "roster.peerAddress" -}}
{{- $root := .root -}}
{{- printf "%s://%s-%s.%s.svc:%v" (ternary "https" "http" $root.Values.tls.enabled) (include "roster.fullname" $root) .component $root.Release.Namespace $root.Values.ports.internal -}}
{{- end -}}

{{/* The settings file (TOML): the chart's wiring over .Values.config. */}}
{{- define "roster.settings" -}}
{{- $wiring := dict
  "listen" (printf "0.0.0.0:%v" .Values.ports.grpc)
  "internal_listen" (printf "0.0.0.0:%v" .Values.ports.internal)
  "database" (dict "data_dir" "/var/lib/roster" "migrate_on_start" false)
-}}
{{- if ne .Values.mode "all" -}}
{{- $_ := set $wiring "cluster" (dict
  "access_address" (include "roster.peerAddress" (dict "root" . "component" "access"))
  "user_registry_address" (include "roster.peerAddress" (dict "root" . "component" "user-registry"))
  "sessions_address" (include "roster.peerAddress" (dict "root" . "component" "sessions"))
  "invitations_address" (include "roster.peerAddress" (dict "root" . "component" "invitations"))
) -}}
{{- end -}}
{{- if .Values.tls.enabled -}}
{{- $tls := dict "cert_file" "/etc/roster/tls/tls.crt" "key_file" "/etc/roster/tls/tls.key" "ca_file" "/etc/roster/tls/ca.crt" "server_name" .Values.tls.serverName -}}
{{- if .Values.tls.mutual -}}
{{- $_ := set $tls "client_ca_file" "/etc/roster/tls/ca.crt" -}}
{{- end -}}
{{- $_ := set $wiring "tls" $tls -}}
{{- end -}}
{{- $events := dict -}}
{{- if eq .Values.nats.auth "userPassword" -}}
{{- $_ := set $events "nats_user" .Values.nats.user -}}
{{- end -}}
{{- if eq .Values.nats.auth "creds" -}}
{{- $_ := set $events "nats_creds_file" (printf "/etc/roster/nats/%s" .Values.secrets.keys.natsCreds) -}}
{{- end -}}
{{- if $events -}}
{{- $_ := set $wiring "events" $events -}}
{{- end -}}
{{- if .Values.metrics.enabled -}}
{{- $_ := set $wiring "metrics" (dict "listen" (printf "0.0.0.0:%v" .Values.metrics.port)) -}}
{{- end -}}
{{- if .Values.bootstrap.adminUserId -}}
{{- $_ := set $wiring "bootstrap" (dict "admin_user_id" .Values.bootstrap.adminUserId "admin_email" .Values.bootstrap.adminEmail) -}}
{{- end -}}
{{- $settings := mustMergeOverwrite (deepCopy (default (dict) .Values.config)) $wiring -}}
# Written by the roster chart: the non-secret settings of every rosterd of
# release {{ .Release.Name }}. Secrets come from environment variables set
# from the Secret {{ include "roster.secretName" . }}.
{{ include "roster.tomlTable" (dict "prefix" "" "table" $settings) }}
{{- end -}}

{{/* A TOML table: plain keys first, then sub-tables. */}}
{{- define "roster.tomlTable" -}}
{{- $prefix := .prefix -}}
{{- $tables := dict -}}
{{- range $key, $value := .table -}}
{{- if kindIs "map" $value -}}
{{- $_ := set $tables $key $value -}}
{{- else if not (kindIs "invalid" $value) }}
{{ $key }} = {{ include "roster.tomlValue" $value }}
{{- end -}}
{{- end -}}
{{- range $key, $value := $tables }}

[{{ if $prefix }}{{ $prefix }}.{{ end }}{{ $key }}]
{{- include "roster.tomlTable" (dict "prefix" (ternary (printf "%s.%s" $prefix $key) $key (ne $prefix "")) "table" $value) }}
{{- end -}}
{{- end -}}

{{/* One TOML value. YAML numbers arrive as floats: whole ones are integers. */}}
{{- define "roster.tomlValue" -}}
{{- if kindIs "string" . -}}
{{- toJson . -}}
{{- else if kindIs "bool" . -}}
{{- . -}}
{{- else if or (kindIs "float64" .) (kindIs "float32" .) -}}
{{- if eq (floor .) (float64 .) -}}{{- int64 . -}}{{- else -}}{{- . -}}{{- end -}}
{{- else if or (kindIs "int" .) (kindIs "int64" .) -}}
{{- . -}}
{{- else if kindIs "slice" . -}}
[{{- range $i, $e := . -}}{{- if $i }}, {{ end -}}{{- include "roster.tomlValue" $e -}}{{- end -}}]
{{- else -}}
{{- fail (printf "config: cannot write %v (%s) as TOML" . (kindOf .)) -}}
{{- end -}}
{{- end -}}

{{/* A secret setting as an environment variable from the Secret. */}}
{{- define "roster.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ include "roster.secretName" .root }}
      key: {{ .key }}
{{- end -}}

{{/* Every secret setting a rosterd that serves needs. */}}
{{- define "roster.env" -}}
{{- $root := . -}}
{{- $keys := .Values.secrets.keys -}}
{{ include "roster.secretEnv" (dict "root" $root "name" "ROSTER__DATABASE__URL" "key" $keys.databaseUrl) }}
{{ include "roster.secretEnv" (dict "root" $root "name" "ROSTER__AUTH__TOKEN_HASH_KEY" "key" $keys.tokenHashKey) }}
{{ include "roster.secretEnv" (dict "root" $root "name" "ROSTER__CLUSTER__KEYS" "key" $keys.clusterKeys) }}
{{ include "roster.secretEnv" (dict "root" $root "name" "ROSTER__EVENTS__NATS_URL" "key" $keys.natsUrl) }}
{{- if eq .Values.nats.auth "userPassword" }}
{{ include "roster.secretEnv" (dict "root" $root "name" "ROSTER__EVENTS__NATS_PASSWORD" "key" $keys.natsPassword) }}
{{- else if eq .Values.nats.auth "token" }}
{{ include "roster.secretEnv" (dict "root" $root "name" "ROSTER__EVENTS__NATS_TOKEN" "key" $keys.natsToken) }}
{{- else if eq .Values.nats.auth "nkey" }}
{{ include "roster.secretEnv" (dict "root" $root "name" "ROSTER__EVENTS__NATS_NKEY_SEED" "key" $keys.natsNkeySeed) }}
{{- end }}
{{- if .Values.mail.smtp }}
{{ include "roster.secretEnv" (dict "root" $root "name" "ROSTER__MAIL__SMTP_URL" "key" $keys.smtpUrl) }}
{{- end }}
{{- if and .Values.bootstrap.adminUserId .Values.bootstrap.passwordFromSecret }}
{{ include "roster.secretEnv" (dict "root" $root "name" "ROSTER__BOOTSTRAP__ADMIN_PASSWORD" "key" $keys.bootstrapAdminPassword) }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Volumes of every rosterd pod: (dict "root" $ "configMap" name) */}}
{{- define "roster.volumes" -}}
{{- $configMap := .configMap -}}
{{- with .root -}}
- name: config
  configMap:
    name: {{ $configMap }}
- name: data
  emptyDir: {}
- name: tmp
  emptyDir:
    medium: Memory
    sizeLimit: 16Mi
{{- if .Values.tls.enabled }}
- name: tls
  secret:
    secretName: {{ required "tls.secretName is required when tls.enabled" .Values.tls.secretName }}
{{- end }}
{{- if eq .Values.nats.auth "creds" }}
- name: nats-creds
  secret:
    secretName: {{ include "roster.secretName" . }}
    items:
      - key: {{ .Values.secrets.keys.natsCreds }}
        path: {{ .Values.secrets.keys.natsCreds }}
{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}
{{- end -}}

{{- define "roster.volumeMounts" -}}
- name: config
  mountPath: /etc/roster/config
  readOnly: true
- name: data
  mountPath: /var/lib/roster
- name: tmp
  mountPath: /tmp
{{- if .Values.tls.enabled }}
- name: tls
  mountPath: /etc/roster/tls
  readOnly: true
{{- end }}
{{- if eq .Values.nats.auth "creds" }}
- name: nats-creds
  mountPath: /etc/roster/nats
  readOnly: true
{{- end }}
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The container that runs `rosterd migrate`. */}}
{{- define "roster.migrateContainer" -}}
- name: migrate
  image: {{ include "roster.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args: ["--config", "/etc/roster/config/roster.toml", "migrate"]
  env:
    {{- include "roster.secretEnv" (dict "root" . "name" "ROSTER__DATABASE__URL" "key" .Values.secrets.keys.databaseUrl) | nindent 4 }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  resources:
    {{- toYaml (default .Values.resources .Values.migrations.resources) | nindent 4 }}
  volumeMounts:
    {{- include "roster.volumeMounts" . | nindent 4 }}
{{- end -}}
