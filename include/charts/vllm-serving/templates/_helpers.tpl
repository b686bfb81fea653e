{{/*
Names and selector labels: each is defined once, here, and every template takes it from here.

llm-on-eks installs the chart as release <deployment> with deploymentName <deployment>, then
finds the release's Deployment or LeaderWorkerSet and its Service by that name, and lists the
serving pods by app.kubernetes.io/name=vllm-serving,app.kubernetes.io/instance=<release>
(plugins/llm_on_eks/kube/readiness.py). So objects are named after the release alone, without
the "<release>-<chart>" fullname most charts build (as llm-d-modelservice's chart does,
https://github.com/llm-d-incubation/llm-d-modelservice/blob/main/charts/llm-d-modelservice/templates/_helpers.tpl),
and a deploymentName that differs from the release name fails the render instead of naming the
objects after one and selecting the pods by the other.
*/}}
{{- define "vllm-serving.fullname" -}}
{{- $name := required "deploymentName is required" .Values.deploymentName -}}
{{- if ne $name .Release.Name -}}
{{- fail (printf "deploymentName %q must equal the Helm release name %q: the chart names every object after deploymentName, and llm-on-eks finds those objects and selects their pods (app.kubernetes.io/instance) by the release name" $name .Release.Name) -}}
{{- end -}}
{{- $name | trunc 53 | trimSuffix "-" -}}
{{- end -}}

{{/* The labels every selector matches on: the Deployment's, the Service's, and readiness.py's. */}}
{{- define "vllm-serving.selectorLabels" -}}
app.kubernetes.io/name: vllm-serving
app.kubernetes.io/instance: {{ include "vllm-serving.fullname" . }}
{{- end -}}

{{/* A LeaderWorkerSet pod's role; the context is the role ("leader" or "worker"). */}}
{{- define "vllm-serving.roleLabel" -}}
role: {{ . }}
{{- end -}}

{{/* The pods the Service sends requests to: the Deployment's pod, or each group's leader (the
only pod of a LeaderWorkerSet group that serves the API). */}}
{{- define "vllm-serving.serviceSelectorLabels" -}}
{{ include "vllm-serving.selectorLabels" . }}
{{- if gt (int .Values.nodes) 1 }}
{{ include "vllm-serving.roleLabel" "leader" }}
{{- end }}
{{- end -}}

{{- define "vllm-serving.labels" -}}
{{ include "vllm-serving.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | quote }}
app.kubernetes.io/component: model-server
app.kubernetes.io/part-of: llm-on-eks
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- with .Values.labels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "vllm-serving.annotations" -}}
llm-on-eks.io/deployment: {{ include "vllm-serving.fullname" . }}
llm-on-eks.io/model: {{ .Values.model.name | quote }}
llm-on-eks.io/idle-ttl-minutes: {{ .Values.lifecycle.idleTtlMinutes | quote }}
llm-on-eks.io/protected: {{ .Values.lifecycle.protected | quote }}
{{- end -}}

{{/* Invariants the schema cannot express. */}}
{{- define "vllm-serving.validate" -}}
{{- if not (or (hasPrefix "hf://" .Values.model.source) (hasPrefix "pvc://" .Values.model.source) (hasPrefix "s3://" .Values.model.source)) -}}
{{- fail (printf "model.source must start with hf://, pvc:// or s3://, got %q" .Values.model.source) -}}
{{- end -}}
{{- if and (hasPrefix "s3://" .Values.model.source) (ne (toString (index .Values.vllm.args "load-format")) "runai_streamer") -}}
{{- fail "an s3:// model.source is read by vLLM's Run:ai model streamer: set vllm.args.load-format to runai_streamer" -}}
{{- end -}}
{{- if eq .Values.accelerator.type "neuron" -}}
{{- /* Each Neuron framework keeps its compiled model its own way; the other's location would be ignored. */ -}}
{{- if eq .Values.neuron.framework "nxdi" -}}
{{- if not .Values.neuron.compiledArtifacts -}}
{{- fail "neuron.compiledArtifacts is required when neuron.framework is nxdi" -}}
{{- end -}}
{{- if .Values.neuron.compileCacheUrl -}}
{{- fail "neuron.compileCacheUrl is optimum's: NxD Inference loads neuron.compiledArtifacts" -}}
{{- end -}}
{{- else if eq .Values.neuron.framework "optimum" -}}
{{- if not .Values.neuron.compileCacheUrl -}}
{{- fail "neuron.compileCacheUrl is required when neuron.framework is optimum: without it every restart recompiles" -}}
{{- end -}}
{{- if .Values.neuron.compiledArtifacts -}}
{{- fail "neuron.compiledArtifacts is NxD Inference's: optimum-neuron compiles into neuron.compileCacheUrl" -}}
{{- end -}}
{{- else -}}
{{- fail "neuron.framework (optimum or nxdi) is required when accelerator.type is neuron" -}}
{{- end -}}
{{- end -}}
{{- if hasKey .Values.vllm.args "model" -}}
{{- fail "vllm.args must not set model: it comes from model.source" -}}
{{- end -}}
{{- range $key, $_ := .Values.labels -}}
{{- if or (hasPrefix "app.kubernetes.io/" $key) (hasPrefix "helm.sh/" $key) (eq $key "role") -}}
{{- fail (printf "labels must not set %s: the chart sets it, and app.kubernetes.io/name, app.kubernetes.io/instance and role select the pods" $key) -}}
{{- end -}}
{{- end -}}
{{- /* The extended resource(s) a pod of each accelerator type requests. */ -}}
{{- $byType := dict "gpu" (list "nvidia.com/gpu") "neuron" (list "aws.amazon.com/neuron" "aws.amazon.com/neuroncore") -}}
{{- $wanted := get $byType .Values.accelerator.type -}}
{{- $limits := .Values.resources.limits | default dict -}}
{{- $requests := .Values.resources.requests | default dict -}}
{{- $found := false -}}
{{- range $wanted -}}
{{- if hasKey $limits . -}}
{{- $found = true -}}
{{- if and (hasKey $requests .) (ne (toString (index $requests .)) (toString (index $limits .))) -}}
{{- fail (printf "resources.requests[%q] (%v) must equal resources.limits[%q] (%v): Kubernetes does not overcommit extended resources" . (index $requests .) . (index $limits .)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if not $found -}}
{{- fail (printf "resources.limits must request the accelerator of accelerator.type %s: %s" .Values.accelerator.type (join " or " $wanted)) -}}
{{- end -}}
{{- end -}}

{{/* Where a pvc:// model source's claim is mounted (the staging Job uses the same path). */}}
{{- define "vllm-serving.modelsMount" -}}/fsx{{- end -}}

{{/* vLLM flags: --model from model.source, then vllm.args in key order. */}}
{{- define "vllm-serving.args" -}}
{{- $source := .Values.model.source -}}
{{- if hasPrefix "hf://" $source -}}
{{- $ref := splitList "@" (trimPrefix "hf://" $source) }}
- {{ printf "--model=%s" (index $ref 0) | quote }}
{{- if gt (len $ref) 1 }}
- {{ printf "--revision=%s" (index $ref 1) | quote }}
{{- end }}
{{- else if hasPrefix "s3://" $source }}
- {{ printf "--model=%s" $source | quote }}
{{- else }}
{{- $path := splitn "/" 2 (trimPrefix "pvc://" $source) }}
- {{ printf "--model=%s/%s" (include "vllm-serving.modelsMount" .) $path._1 | quote }}
{{- end }}
- {{ printf "--port=%v" .Values.service.port | quote }}
{{- range $key, $value := .Values.vllm.args }}
{{- if kindIs "bool" $value }}
{{- if $value }}
- {{ printf "--%s" $key | quote }}
{{- end }}
{{- else if and (kindIs "float64" $value) (eq (float64 (int64 $value)) $value) }}
{{- /* Helm reads every YAML number as a float64, which %v prints as 1e+06: a whole number is printed as one. */}}
- {{ printf "--%s=%d" $key (int64 $value) | quote }}
{{- else }}
- {{ printf "--%s=%v" $key $value | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The server pod, shared by the Deployment and the LeaderWorkerSet leader. */}}
{{- define "vllm-serving.podSpec" -}}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
containers:
  - name: vllm
    image: "{{ .Values.image.repository }}:{{ .Values.image.tag }}"
    imagePullPolicy: {{ .Values.image.pullPolicy }}
    command: ["python3", "-m", "vllm.entrypoints.openai.api_server"]
    args:
      {{- include "vllm-serving.args" . | nindent 6 }}
    ports:
      - name: http
        containerPort: {{ .Values.service.port }}
    env:
      - name: HF_TOKEN
        valueFrom:
          secretKeyRef: {name: {{ .Values.hfToken.secretName }}, key: {{ .Values.hfToken.secretKey }}}
      - name: HUGGING_FACE_HUB_TOKEN
        valueFrom:
          secretKeyRef: {name: {{ .Values.hfToken.secretName }}, key: {{ .Values.hfToken.secretKey }}}
      {{- if and (eq .Values.accelerator.type "neuron") (eq .Values.neuron.framework "nxdi") }}
      - name: NEURON_COMPILED_ARTIFACTS
        value: {{ .Values.neuron.compiledArtifacts | quote }}
      {{- else if and (eq .Values.accelerator.type "neuron") (eq .Values.neuron.framework "optimum") }}
      - name: NEURON_COMPILE_CACHE_URL
        value: {{ .Values.neuron.compileCacheUrl | quote }}
      {{- end }}
      {{- range $name, $value := .Values.env }}
      - name: {{ $name }}
        value: {{ $value | quote }}
      {{- end }}
    # Standard requests/limits, as given (the accelerator included), like the container
    # resources of llm-d-modelservice's chart.
    resources:
      {{- toYaml .Values.resources | nindent 6 }}
    # Readiness is decided by the server itself: vLLM's GET /health answers 200 once the engine
    # is up (https://docs.vllm.ai/en/latest/deployment/k8s.html probes it the same way).
    startupProbe:
      httpGet: {path: /health, port: http}
      periodSeconds: {{ .Values.startup.periodSeconds }}
      failureThreshold: {{ div (add .Values.startup.budgetSeconds .Values.startup.periodSeconds -1) .Values.startup.periodSeconds }}
    readinessProbe:
      {{- toYaml .Values.readinessProbe | nindent 6 }}
    livenessProbe:
      httpGet: {path: /health, port: http}
      periodSeconds: 30
      failureThreshold: 5
    volumeMounts:
      - {name: shm, mountPath: /dev/shm}
      {{- if hasPrefix "pvc://" .Values.model.source }}
      - {name: models, mountPath: {{ include "vllm-serving.modelsMount" . }}, readOnly: true}
      {{- end }}
volumes:
  - name: shm
    emptyDir: {medium: Memory, sizeLimit: {{ .Values.vllm.shmSize }}}
  {{- if hasPrefix "pvc://" .Values.model.source }}
  - name: models
    persistentVolumeClaim:
      claimName: {{ (splitn "/" 2 (trimPrefix "pvc://" .Values.model.source))._0 }}
  {{- end }}
{{- end -}}
