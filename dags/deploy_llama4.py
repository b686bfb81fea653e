"""
### deploy_llama4

Takes Llama 4 Scout or Maverick from nothing to a tested, serving vLLM endpoint on Amazon EKS,
on NVIDIA GPUs (p5: Scout BF16, Maverick FP8) or AWS Trainium2 (trn2: BF16, compiled for Neuron).

Trigger it from the form, or:

    airflow dags trigger deploy_llama4 --conf '{"model": "llama4-maverick", "accelerator": "neuron"}'

Set `dry_run` to see the whole plan (sizing, cost, AWS calls, Kubernetes objects, Helm values)
without creating anything. Bad input is refused before any resource exists.
"""

from __future__ import annotations

from llm_on_eks.factory import build_deploy_dag

DAG_ID = "deploy_llama4"

build_deploy_dag(
    DAG_ID,
    doc_md=__doc__,
    model_ids=["llama4-scout", "llama4-maverick"],
    default_model="llama4-scout",
    tags=["llama4"],
)
