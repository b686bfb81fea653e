"""
### teardown_deployment

Takes one deployment away: its Helm release (waiting until its pods are gone), its Jobs, the
token Secret and FSx claim when no other deployment in the namespace uses them, our device
plugin when no other deployment's nodes of that accelerator remain, and its node group. The
FSx file system, the cluster (with its system node group) and the artifact bucket go only when
switched on, and only if llm-on-eks made them and nothing else uses them. Something already
gone is a success; something llm-on-eks did not make is never touched.

    airflow dags trigger teardown_deployment --conf '{"deployment_name": "llama4-scout-gpu"}'

`dry_run` lists exactly what would go and why each kept thing is kept.
"""

from __future__ import annotations

from llm_on_eks.factory import build_teardown_dag

DAG_ID = "teardown_deployment"

build_teardown_dag(DAG_ID, doc_md=__doc__)
