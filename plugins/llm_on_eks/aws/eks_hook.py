"""EksHook with the project's EKS waiters (``waiters/eks.json``), as FsxHook has FSx's: the worker
(a boto3 waiter) and the triggerer (an aiobotocore waiter, ``triggers.eks.EksNodegroupActiveTrigger``)
wait by the same rules.

``nodegroup_active`` is botocore's (ACTIVE succeeds, CREATE_FAILED fails) and also fails on:

- a node group still CREATING that reports a health issue. A node group whose instances cannot
  launch (no capacity: AsgInstanceLaunchFailures with EC2's InsufficientInstanceCapacity; a
  quota: InstanceLimitExceeded; no addresses: InsufficientFreeAddresses) stays CREATING with the
  issue while its Auto Scaling group retries, for up to the whole wait; the step fails at the
  first look that shows one, with its code and message (``aws.eks.launch_failure``).
- DEGRADED (botocore's EKS model, NodegroupStatus: a node group with health issues after an
  update), which botocore's waiter would poll to its last attempt.
"""

from __future__ import annotations

from pathlib import Path

from airflow.providers.amazon.aws.hooks.eks import EksHook

WAITERS = Path(__file__).with_name("waiters") / "eks.json"


class EksNodegroupHook(EksHook):
    """EksHook whose ``get_waiter("nodegroup_active")`` is ours (custom waiters come first)."""

    @property
    def waiter_path(self) -> Path:
        return WAITERS
