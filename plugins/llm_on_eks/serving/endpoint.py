"""How a check reaches the served model: an explicit base URL (ingress) or the API server's
service proxy, which needs neither a port-forward nor a public load balancer."""

from __future__ import annotations

from typing import Any


def service_proxy_path(plan: dict[str, Any]) -> str:
    serving = plan["serving"]
    return f"/api/v1/namespaces/{serving['namespace']}/services/{serving['service']}:{serving['port']}/proxy"


def describe_base_url(plan: dict[str, Any]) -> str:
    return plan["serving"]["base_url"] or f"<Kubernetes API server>{service_proxy_path(plan)}"
