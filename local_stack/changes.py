"""What a run asked AWS and Kubernetes to create or change, counted from what the servers received
(the moto server's request log, local_stack/request_log.py, and the API server's own counter
apiserver_request_total), not from our code's view: the benchmarks' measure of a re-run's cost.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from local_stack import request_log
from local_stack.api_server_requests import Key, request_totals, since

# A request is a change unless it only reads (IAM's read actions; the API server's read verbs).
READ_ACTIONS = re.compile(r":(Describe|Get|List|Head)")
CHANGING_VERBS = {"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"}
# What other actors of the control plane change all the time (kwok's node heartbeats and status,
# the scheduler's bindings, the controllers' status and events): not requests of a deploy. The
# counter does not say who asked, so the deploy's own Lease (taken and released: two changes by
# design) is among the leases left out.
BACKGROUND = {("coordination.k8s.io", "leases", ""), ("", "nodes", "status"), ("", "events", ""),
              ("events.k8s.io", "events", ""), ("", "pods", "status"), ("", "pods", "binding"),
              # Access reviews (the check_access step) are created, answered and kept nowhere.
              ("authorization.k8s.io", "selfsubjectaccessreviews", "")}


@dataclass
class Changes:
    aws_requests: int = 0
    aws: Counter[str] = field(default_factory=Counter)  # changing AWS actions
    kube: dict[Key, float] = field(default_factory=dict)  # changing Kubernetes requests, by verb, resource, code

    def lines(self) -> list[str]:
        accepted = sum(v for k, v in self.kube.items() if k[4].startswith("2"))
        kube = ", ".join(f"{verb} {group + '/' if group else ''}{resource}{'/' + sub if sub else ''} HTTP {code} "
                         f"x{int(v)}" for (verb, group, resource, sub, code), v in sorted(self.kube.items()))
        return [f"AWS: {self.aws_requests} requests, {sum(self.aws.values())} changing: {dict(self.aws) or 'none'}",
                f"Kubernetes (every client of the API server; heartbeats, status, events and access reviews left "
                f"out): {int(sum(self.kube.values()))} changing requests, {int(accepted)} accepted: {kube or 'none'}"]


@contextmanager
def counting(aws_url: str, kubeconfig: str, access_key_id: str) -> Iterator[Changes]:
    """The changes requested while the block runs; AWS's only by ``access_key_id`` (Airflow's)."""
    changes = Changes()
    request_log.reset(aws_url)
    request_log.start(aws_url)
    before = request_totals(kubeconfig)
    try:
        yield changes
    finally:
        request_log.stop(aws_url)
    calls = [c for c in request_log.calls(aws_url) if c.access_key_id == access_key_id]
    changes.aws_requests = len(calls)
    changes.aws.update(c.action for c in calls if not READ_ACTIONS.search(c.action))
    changes.kube = {k: v for k, v in since(before, request_totals(kubeconfig)).items()
                    if k[0] in CHANGING_VERBS and k[1:4] not in BACKGROUND}
