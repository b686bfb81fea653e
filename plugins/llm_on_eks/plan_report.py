"""A plan in words: what the task log shows a person before anything is spent."""

from __future__ import annotations

from llm_on_eks.plan import CLUSTER_HOURLY_USD, SYSTEM_INSTANCE_TYPE, SYSTEM_SCALING, Plan


def summarize(plan: Plan) -> str:
    profile, sizing, model = plan["profile"], plan["sizing"], plan["model"]
    cluster_cost = (f" (+${CLUSTER_HOURLY_USD:.2f}/hour if the cluster is created: EKS control plane and "
                    f"{SYSTEM_SCALING['desired_size']}x {SYSTEM_INSTANCE_TYPE} system nodes)"
                    if plan["cluster"]["create"] else "")
    precision = profile["quantization"] or profile["dtype"]
    lines = [
        f"Deployment {plan['deployment']!r}{' (DRY RUN: nothing will be created)' if plan['dry_run'] else ''}",
        f"  model       {model['display_name']} = {model['hf_repo']}@{model['revision']}"
        + ("" if model["revision_pinned"] else "  (revision not pinned to a commit)"),
        f"  hardware    {profile['nodes']}x {profile['instance_type']} ({profile['accelerator']}, profile "
        f"{profile.get('name', profile['accelerator'])}), {profile['accelerators_per_node']} accelerators per node"
        + (f", host memory {profile['host_memory']['request']} requested / {profile['host_memory']['limit']} limit"
           if profile.get("host_memory") else ""),
        f"  parallelism TP {profile['tensor_parallel_size']} x PP {profile['pipeline_parallel_size']}, "
        f"{precision} weights, KV cache {profile['kv_cache_dtype']}",
        f"  memory      weights {sizing['weights_gib']} GiB ({sizing['weights_per_rank_gib']} GiB per rank of "
        f"{sizing['usable_per_rank_gib']} GiB usable after a {sizing['runtime_reserve_gib']} GiB reserve for "
        f"activations and graphs, a planning figure only a run on the hardware checks); KV budget "
        f"{sizing['kv_budget_per_rank_gib']} GiB per rank",
        f"  context     max_model_len {profile['max_model_len']} (largest that fits: {sizing['max_model_len_fit']}, "
        f"by {sizing['kv_source']}), images per prompt {profile['images_per_prompt']}",
        f"  weights     {profile['weights']}",
        *([f"  compile     {plan['neuron']['framework']} into {plan['neuron']['artifacts_uri']} "
           f"({plan['neuron']['cache_env']}), once per key {plan['neuron']['hash']}"] if plan.get("neuron") else []),
        f"  cluster     {plan['cluster']['name']} in {plan['aws']['region']} "
        f"({'created if missing' if plan['cluster']['create'] else 'must exist'}), "
        f"node group {plan['nodegroup']['name']}",
        f"  serving     release {plan['kubernetes']['release']} in namespace {plan['kubernetes']['namespace']}, "
        f"image {profile['image']}",
        f"  cost        ${sizing['hourly_usd']:.2f}/hour on demand{cluster_cost}; idle teardown after "
        f"{plan['lifecycle']['idle_ttl_minutes']} min" + (" (protected)" if plan["lifecycle"]["protected"] else ""),
    ]
    return "\n".join(lines)
