{{/*
Names: "<release>" when it contains the chart name, else "<release>-gpu-inventory", cut to 46
characters: the longest name composed from it, the Service "<fullname>-operator-metrics", must
stay a DNS-1035 label (at most 63).
*/}}
{{- define "gpu-inventory.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 46 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 46 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 46 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "gpu-inventory.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* A component's object name: "<fullname>-<component>". Call with (list . "agent"). */}}
{{- define "gpu-inventory.component" -}}
{{- printf "%s-%s" (include "gpu-inventory.fullname" (index . 0)) (index . 1) -}}
{{- end -}}

{{/*
Selector labels of a component's pods. Selectors are immutable: never add to these.
Call with (list . "agent").
*/}}
{{- define "gpu-inventory.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "gpu-inventory.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* Every object's and pod template's labels. Call with (list . "agent"). */}}
{{- define "gpu-inventory.labels" -}}
{{- $root := index . 0 -}}
{{ include "gpu-inventory.selectorLabels" . }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: gpu-inventory
app.kubernetes.io/managed-by: {{ default $root.Release.Service $root.Values.managedBy }}
helm.sh/chart: {{ printf "%s-%s" $root.Chart.Name $root.Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* No default image: none is published yet, and a made-up one would only fail later, as
ErrImagePull on every node. */}}
{{- define "gpu-inventory.image" -}}
{{- $image := .Values.image -}}
{{- $repository := required "image.repository is required: no gpu-inventory image is published for you; build and push one with hack/publish-image.sh and set image.repository and image.digest (README, Deploy to a real cluster)" $image.repository -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (default .Chart.AppVersion $image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "gpu-inventory.agentPriorityClass" -}}
{{- if .Values.agent.priorityClass.create -}}
{{- include "gpu-inventory.component" (list . "agent") -}}
{{- else -}}
{{- .Values.agent.priorityClass.name -}}
{{- end -}}
{{- end -}}

{{/*
The container securityContext every component shares (Pod Security "restricted"). Call with a
list of capabilities to add back, empty but for the agent's MIG mode (see agent.yaml).
*/}}
{{- define "gpu-inventory.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
  {{- with . }}
  # Pod Security "privileged" only: see README, "MIG monitoring".
  add: {{ toJson . }}
  {{- end }}
{{- end -}}

{{- define "gpu-inventory.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
Where a Deployment's pods may run: topology spread over its own pods, node selector,
tolerations, affinity, as its values say. Call with (list . "operator" .Values.operator).
*/}}
{{- define "gpu-inventory.placement" -}}
{{- $root := index . 0 -}}
{{- $component := index . 1 -}}
{{- $values := index . 2 -}}
{{- with $values.topologySpreadConstraints }}
topologySpreadConstraints:
{{- range . }}
  - {{ toYaml . | nindent 4 | trim }}
    labelSelector:
      matchLabels:
        {{- include "gpu-inventory.selectorLabels" (list $root $component) | nindent 8 }}
{{- end }}
{{- end }}
{{- with $values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
A component's PodDisruptionBudget, if its values enable one. Call with
(list . "operator" .Values.operator).
*/}}
{{- define "gpu-inventory.podDisruptionBudget" -}}
{{- $root := index . 0 -}}
{{- $component := index . 1 -}}
{{- with (index . 2).podDisruptionBudget }}
{{- if .enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "gpu-inventory.component" (list $root $component) }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "gpu-inventory.labels" (list $root $component) | nindent 4 }}
spec:
  maxUnavailable: {{ .maxUnavailable }}
  selector:
    matchLabels:
      {{- include "gpu-inventory.selectorLabels" (list $root $component) | nindent 6 }}
{{- end }}
{{- end }}
{{- end -}}
