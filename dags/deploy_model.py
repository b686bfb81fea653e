"""
### deploy_model

The deploy_llama4 pipeline for any model in the catalog (`include/catalog/models.yaml`):
Llama 4, DeepSeek-R1-Distill-Qwen-32B on p4d, Llama 3 8B on a single GPU, and whatever is
added there.

    airflow dags trigger deploy_model --conf '{"model": "llama-3-8b"}'
"""

from __future__ import annotations

from llm_on_eks.factory import build_deploy_dag

DAG_ID = "deploy_model"

build_deploy_dag(DAG_ID, doc_md=__doc__)
