"""A plan in words: what the task log shows a person before anything is spent."""

from __future__ import annotations

from llm_on_eks.plan.cold_start import ColdStartSection
from llm_on_eks.plan.defaults import CLUSTER_HOURLY_USD, NETWORK_HOURLY_USD, SYSTEM_INSTANCE_TYPE, SYSTEM_SCALING
from llm_on_eks.plan.types import (
    ClusterSection,
    ModelSection,
    NeuronSection,
    NodegroupSpec,
    ProfileSection,
    ReleaseSpec,
    Target,
    WeightOption,
)
from llm_on_eks.sizing import SizingSection

# The plan's sections ``summarize`` reads, by keyword: ``summarize(**{k: plan[k] for k in SECTIONS})``.
SECTIONS = ("target", "model", "profile", "sizing", "cluster", "nodegroup", "neuron", "release", "cold_start",
            "weights_options")
PHASE_NAMES = {"cluster": "cluster", "nodegroup": "node group", "weights": "weights", "image_pull": "image pull",
               "weight_load": "weight load", "engine_start": "engine start"}


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def summarize(*, target: Target, model: ModelSection, profile: ProfileSection, sizing: SizingSection,
              cluster: ClusterSection, nodegroup: NodegroupSpec, neuron: NeuronSection | None,
              release: ReleaseSpec, cold_start: ColdStartSection, weights_options: list[WeightOption]) -> str:
    network = not cluster["subnet_ids"]
    cluster_cost = (f" (+${CLUSTER_HOURLY_USD + (NETWORK_HOURLY_USD if network else 0):.2f}/hour if the cluster is "
                    f"created: EKS control plane{',' if network else ' and'} {SYSTEM_SCALING['desired_size']}x "
                    f"{SYSTEM_INSTANCE_TYPE} system nodes{' and a NAT gateway' if network else ''})"
                    if cluster["create"] else "")
    precision = profile["quantization"] or profile["dtype"]
    lines = [
        f"Deployment {target['deployment']!r}{' (DRY RUN: nothing will be created)' if target['dry_run'] else ''}",
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
        f"  weights     {profile['weights']}" + ("; each source predicted (the weights param picks one):"
                                                     if weights_options else ""),
        *(f"              {o['weights']:<10} load {minutes(o['weight_load_s']):>6}, first token "
          f"~{minutes(o['ttft_s']):>6}, storage ${o['storage_usd_month']:,.2f}/month: {o['storage']}"
          + ("  <- this run" if o["weights"] == profile["weights"] else "") for o in weights_options),
        *([f"  compile     {neuron['framework']} into {neuron['artifacts_uri']} "
           f"({neuron['cache_env']}), once per key {neuron['hash']}"] if neuron else []),
        f"  cluster     {cluster['name']} in {target['access']['region']} "
        f"({'created if missing' if cluster['create'] else 'must exist'}"
        + (f", and if created, removed after {cluster['quiet_minutes']} min without a deployment"
           if cluster["create"] and cluster["quiet_minutes"] else "")
        + f"), node group {nodegroup['name']}",
        *([f"  capacity    reserved: {nodegroup['capacity_reservation_id']} (an On-Demand Capacity Reservation or a "
           f"Capacity Block, as AWS says at run time), nodes in its zone only, launch template "
           f"{nodegroup['launch_template']}"] if nodegroup["capacity_reservation_id"] else []),
        f"  serving     release {release['name']} in namespace {release['namespace']}, "
        f"image {profile['image']}",
        f"  cost        ${sizing['hourly_usd']:.2f}/hour on demand"
        f"{' (the reservation is billed by its own terms instead)' if nodegroup['capacity_reservation_id'] else ''}"
        f"{cluster_cost}; idle teardown after "
        f"{release['idle_ttl_minutes']} min" + (" (protected)" if release["protected"] else ""),
        f"  cold start  ~{minutes(cold_start['ttft_s'])} to first token onto an existing cluster"
        + (f", ~{minutes(cold_start['ttft_new_cluster_s'])} creating it" if cluster["create"] else "")
        + " (predicted; the cold_start step measures it):",
        *(f"              {PHASE_NAMES[p['phase']]:<13}{minutes(p['seconds']):>7}  {p['basis']}"
          for p in cold_start["phases"] if p["phase"] != "cluster" or cluster["create"]),
    ]
    return "\n".join(lines)


def cold_start_lines(measured: dict | None) -> list[str]:
    """The cold_start step's comparison: each phase predicted and measured, those off flagged."""
    if not measured:
        return ["  cold start  not measured"]
    flag = "  << off by more than 20%"
    lines = [f"  cold start  {minutes(measured['measured_ttft_s'])} from trigger to a tested endpoint; predicted "
             f"{minutes(measured['predicted_ttft_s'])} for the phases this run did"
             + (flag if measured["off"] else ""),
             f"              {'phase':<13}{'predicted':>10}{'measured':>10}"]
    for row in measured["phases"]:
        taken = minutes(row["measured_s"]) if row["measured_s"] is not None else "-"
        note = "" if row["note"] == "measured" else f"  {row['note']}"
        lines.append(f"              {PHASE_NAMES[row['phase']]:<13}{minutes(row['predicted_s']):>10}{taken:>10}"
                     f"{flag if row['off'] else note}")
    return lines


def deployment_report(record: dict) -> str:
    """What a person wants to read once a deploy has succeeded: what serves where, how it answered,
    what it costs, and when it goes away (the ``register`` step's record)."""
    lines = [
        f"Deployment {record['deployment']!r}: {record['model']} serving",
        f"  hardware    {record['nodes']}x {record['instance_type']} ({record['accelerator']})",
        f"  where       cluster {record['cluster']} in {record['region']}, namespace {record['namespace']}",
        f"  endpoint    {record['endpoint']}",
        f"  cost        ${record['hourly_usd']:.2f}/hour on demand; idle teardown after "
        f"{record['idle_ttl_minutes']} min without requests" + (" (protected)" if record.get("protected") else ""),
    ]
    if record.get("dry_run"):
        lines[0] = f"Deployment {record['deployment']!r}: {record['model']} (DRY RUN: nothing was created)"
        lines.append("  checks      described, not run (dry run)")
        return "\n".join(lines)
    smoke = record.get("smoke_test")
    lines.append(f"  smoke test  passed: {', '.join(smoke['checks'])}; streamed TTFT {smoke['ttft_ms']:.0f} ms"
                 if smoke else "  smoke test  not run")
    lines += cold_start_lines(record.get("cold_start"))
    bench = record.get("benchmark")
    if not bench:
        lines.append("  benchmark   not run (benchmark: true runs it)")
        return "\n".join(lines)
    lines += [
        f"  benchmark   {bench['requests']} requests at concurrency {bench['concurrency']}, {bench['input_len']} "
        f"tokens in / {bench['output_len']} out: {bench['output_throughput_tok_s']} output tok/s, "
        f"{bench['request_throughput_req_s']} req/s",
        f"              {'ms':<6}{'mean':>10}{'p50':>10}{'p99':>10}",
        *(f"              {name:<6}" + "".join(f"{bench[f'{name}_ms'][stat]:>10.1f}" if bench[f"{name}_ms"][stat]
                                              is not None else f"{'-':>10}" for stat in ("mean", "p50", "p99"))
          for name in ("ttft", "itl", "tpot", "e2e")),
    ]
    return "\n".join(lines)
