{{/* Name of every object: the deployment name, which is also the Helm release name. */}}
{{- define "vllm-serving.name" -}}
{{- required "deploymentName is required" .Values.deploymentName | trunc 53 | trimSuffix "-" -}}
{{- end -}}

{{- define "vllm-serving.selectorLabels" -}}
app.kubernetes.io/name: vllm-serving
app.kubernetes.io/instance: {{ .Release.Name }}
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
llm-on-eks.io/deployment: {{ include "vllm-serving.name" . }}
llm-on-eks.io/model: {{ .Values.model.name | quote }}
llm-on-eks.io/idle-ttl-minutes: {{ .Values.lifecycle.idleTtlMinutes | quote }}
llm-on-eks.io/protected: {{ .Values.lifecycle.protected | quote }}
{{- end -}}

{{/* Invariants the schema cannot express. */}}
{{- define "vllm-serving.validate" -}}
{{- if not (or (hasPrefix "hf://" .Values.model.source) (hasPrefix "pvc://" .Values.model.source)) -}}
{{- fail (printf "model.source must start with hf:// or pvc://, got %q" .Values.model.source) -}}
{{- end -}}
{{- if and (eq .Values.accelerator.type "neuron") (not .Values.neuron.compiledArtifacts) -}}
{{- fail "neuron.compiledArtifacts is required when accelerator.type is neuron" -}}
{{- end -}}
{{- if hasKey .Values.vllm.args "model" -}}
{{- fail "vllm.args must not set model: it comes from model.source" -}}
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
{{- else }}
- {{ printf "--%s=%v" $key $value | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The server pod, shared by the Deployment and the LeaderWorkerSet leader. */}}
{{- define "vllm-serving.podSpec" -}}
{{- $count := toString .Values.accelerator.count -}}
{{- with .Values.schedulerName }}
schedulerName: {{ . }}
{{- end }}
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
      {{- if eq .Values.accelerator.type "neuron" }}
      - name: NEURON_COMPILED_ARTIFACTS
        value: {{ .Values.neuron.compiledArtifacts | quote }}
      {{- end }}
      {{- range $name, $value := .Values.env }}
      - name: {{ $name }}
        value: {{ $value | quote }}
      {{- end }}
    resources:
      requests:
        {{ .Values.accelerator.resource }}: {{ $count | quote }}
        {{- with .Values.resources }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      limits:
        {{ .Values.accelerator.resource }}: {{ $count | quote }}
    # Readiness is decided by the server itself: /health answers 200 once the model is loaded.
    startupProbe:
      httpGet: {path: /health, port: http}
      periodSeconds: {{ .Values.startup.periodSeconds }}
      failureThreshold: {{ div (add .Values.startup.budgetSeconds .Values.startup.periodSeconds -1) .Values.startup.periodSeconds }}
    readinessProbe:
      httpGet: {path: /health, port: http}
      periodSeconds: 10
      failureThreshold: 3
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
