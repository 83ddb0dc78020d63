{{/* Names, labels and derived values shared by every template. */}}

{{- define "veil.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release name, or release-chart when the release name lacks the chart name. */}}
{{- define "veil.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "veil.injectorName" -}}
{{- printf "%s-injector" (include "veil.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "veil.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "veil.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selects the injector's pods: the Deployment, Service, PDB and NetworkPolicy agree on it. */}}
{{- define "veil.injectorSelector" -}}
app.kubernetes.io/name: {{ include "veil.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: injector
{{- end -}}

{{- define "veil.serviceAccountName" -}}
{{- default (include "veil.injectorName" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "veil.tlsSecretName" -}}
{{- default (printf "%s-webhook-tls" (include "veil.fullname" .)) .Values.certs.secretName -}}
{{- end -}}

{{- define "veil.certificateName" -}}
{{- printf "%s-webhook" (include "veil.fullname" .) -}}
{{- end -}}

{{- define "veil.mutatingWebhookName" -}}
{{- include "veil.fullname" . -}}
{{- end -}}

{{- define "veil.approvalsWebhookName" -}}
{{- printf "%s-approvals" (include "veil.fullname" .) -}}
{{- end -}}

{{/* The webhook configurations whose caBundle the injector patches (certs.mode self-managed). */}}
{{- define "veil.webhookConfigurations" -}}
{{- $names := list (include "veil.mutatingWebhookName" .) -}}
{{- if .Values.approvals.enabled -}}
{{- $names = append $names (include "veil.approvalsWebhookName" .) -}}
{{- end -}}
{{- toJson $names -}}
{{- end -}}

{{- define "veil.leaseName" -}}
{{- default (printf "%s-controller" (include "veil.fullname" .)) .Values.injector.leaderElection.leaseName -}}
{{- end -}}

{{/* repository[:tag][@digest] with the shared registry prefix; the tag defaults to appVersion. */}}
{{- define "veil.image" -}}
{{- $root := index . 0 -}}
{{- $image := index . 1 -}}
{{- $registry := $root.Values.images.registry | trimSuffix "/" -}}
{{- $repository := ternary $image.repository (printf "%s/%s" $registry $image.repository) (eq $registry "") -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (default $root.Chart.AppVersion $root.Values.images.tag) -}}
{{- end -}}
{{- end -}}

{{/* Namespaces never injected: the release namespace, kube-system and any listed. */}}
{{- define "veil.excludedNamespaces" -}}
{{- $names := concat (list .Release.Namespace "kube-system") .Values.webhook.excludeNamespaces | uniq -}}
{{- toJson $names -}}
{{- end -}}

{{/* The Service the API server calls and sidecars pull policies from, as a DNS name. */}}
{{- define "veil.serviceHost" -}}
{{- printf "%s.%s.svc" (include "veil.injectorName" .) .Release.Namespace -}}
{{- end -}}

{{- define "veil.signingKeySecretName" -}}
{{- default (printf "%s-controller-signing-key" (include "veil.fullname" .)) .Values.controller.signingKey.secretName -}}
{{- end -}}

{{/* The ConfigMap with the controller's public key, in every injected namespace. */}}
{{- define "veil.publicKeyConfigMap" -}}
veil-controller-key
{{- end -}}

{{/* Checks across values that values.schema.json cannot express. */}}
{{- define "veil.validate" -}}
{{- if eq (int .Values.sidecar.proxyPort) (int .Values.sidecar.adminPort) -}}
{{- fail "sidecar.proxyPort and sidecar.adminPort must differ" -}}
{{- end -}}
{{- $ports := list (int .Values.webhook.port) (int .Values.controller.port) -}}
{{- $servicePorts := list 443 (int .Values.controller.port) -}}
{{- if .Values.approvals.enabled -}}
{{- $ports = append $ports (int .Values.approvals.port) -}}
{{- $servicePorts = append $servicePorts (int .Values.approvals.port) -}}
{{- end -}}
{{- if ne (len $ports) (len (uniq $ports)) -}}
{{- fail "webhook.port, controller.port and approvals.port must differ" -}}
{{- end -}}
{{- /* The Service exposes controller.port and approvals.port as they are, next to the webhook's 443. */ -}}
{{- if ne (len $servicePorts) (len (uniq $servicePorts)) -}}
{{- fail "controller.port and approvals.port must differ from 443, the port the Service gives the webhook" -}}
{{- end -}}
{{- with .Values.injector.leaderElection -}}
{{- if gt (mulf .renewSeconds 2.0) (float64 .leaseDurationSeconds) -}}
{{- fail "injector.leaderElection.renewSeconds must be at most half of leaseDurationSeconds" -}}
{{- end -}}
{{- end -}}
{{- include "veil.validateResources" (list "sidecar" .Values.sidecar.resources "the API server would refuse every injected pod") -}}
{{- with .Values.sidecar.tuning.bodyMemoryBytes -}}
{{- $limit := (($.Values.sidecar.resources).limits | default dict).memory -}}
{{- if and $limit (ge (float64 .) (include "veil.quantity" $limit | float64)) -}}
{{- fail (printf "sidecar.tuning.bodyMemoryBytes (%d) must be below sidecar.resources.limits.memory (%v): bodies held up to it would get every sidecar OOM-killed" (int64 .) $limit) -}}
{{- end -}}
{{- end -}}
{{- include "veil.validateResources" (list "injector" .Values.injector.resources "the API server would refuse the injector's pods") -}}
{{- with .Values.injector.podDisruptionBudget -}}
{{- if .enabled -}}
{{- $replicas := int $.Values.injector.replicas -}}
{{- $minAvailable := .minAvailable -}}
{{- if kindIs "string" $minAvailable -}}
{{- /* A percentage, rounded up as the disruption controller does. */ -}}
{{- $minAvailable = ceil (divf (mul $replicas (trimSuffix "%" $minAvailable | int)) 100) -}}
{{- end -}}
{{- if ge (int $minAvailable) $replicas -}}
{{- fail (printf "injector.podDisruptionBudget.minAvailable (%v) keeps all %d of injector.replicas available: no replica could ever be evicted and node drains would block; raise the replicas, lower minAvailable, or set injector.podDisruptionBudget.enabled=false" .minAvailable $replicas) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- with .Values.certs.selfManaged -}}
{{- if and .caValidityDays .validityDays (gt (int .validityDays) (int .caValidityDays)) -}}
{{- fail "certs.selfManaged.validityDays must be at most caValidityDays" -}}
{{- end -}}
{{- end -}}
{{- end -}}


{{/* Fails when a request is above its limit: list <values path> <resources> <consequence>. */}}
{{- define "veil.validateResources" -}}
{{- $path := index . 0 -}}
{{- $requests := (index . 1).requests | default dict -}}
{{- $limits := (index . 1).limits | default dict -}}
{{- $consequence := index . 2 -}}
{{- range $resource := list "cpu" "memory" -}}
{{- $request := get $requests $resource -}}
{{- $limit := get $limits $resource -}}
{{- if and $request $limit (gt (include "veil.quantity" $request | float64) (include "veil.quantity" $limit | float64)) -}}
{{- fail (printf "%s.resources.requests.%s (%v) must be at most %s.resources.limits.%s (%v): %s" $path $resource $request $path $resource $limit $consequence) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A resource quantity (cores or bytes) as a plain number, so two can be compared. */}}
{{- define "veil.quantity" -}}
{{- $quantity := toString . -}}
{{- $suffix := regexFind "[a-zA-Z]+$" $quantity -}}
{{- $factors := dict "" 1 "m" 0.001 "k" 1e3 "M" 1e6 "G" 1e9 "T" 1e12 "P" 1e15 "E" 1e18 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "Pi" 1125899906842624 "Ei" 1152921504606846976 -}}
{{- mulf (trimSuffix $suffix $quantity | float64) (get $factors $suffix) -}}
{{- end -}}
