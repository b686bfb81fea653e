"""The requests a Kubernetes API server has answered, from its own counter: ``apiserver_request_total``
on its ``/metrics`` (Kubernetes docs, "Kubernetes Metrics Reference"), by verb, API group,
resource, subresource and HTTP code. The counter does not say which client asked: a count over
a span of time holds every client's requests (kwok's node heartbeats, the controllers', ours).
"""

from __future__ import annotations

import re
from collections import Counter

# (verb, group, resource, subresource, code), e.g. ("PATCH", "", "services", "", "200")
Key = tuple[str, str, str, str, str]
SAMPLE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")


def request_totals(kubeconfig: str) -> Counter[Key]:
    """The counter now, read with the kubeconfig's credentials."""
    from kubernetes import config

    api = config.new_client_from_config(config_file=kubeconfig)
    text = api.call_api("/metrics", "GET", _preload_content=False, _return_http_data_only=True,
                        auth_settings=["BearerToken"]).data.decode()
    totals: Counter[Key] = Counter()
    for line in text.splitlines():
        if match := SAMPLE.match(line):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
            key = tuple(labels.get(k, "") for k in ("verb", "group", "resource", "subresource", "code"))
            totals[key] += float(match["value"])
    return totals


def since(before: Counter[Key], after: Counter[Key]) -> Counter[Key]:
    """The requests answered between two readings."""
    return Counter({k: v - before.get(k, 0) for k, v in after.items() if v > before.get(k, 0)})
