"""How a check reaches the served model: an explicit base URL (ingress) or the API server's
service proxy, which needs neither a port-forward nor a public load balancer.

Through the proxy every request is authenticated to the API server with the kubeconfig's
credentials (bearer token, EKS exec-plugin token or client certificate) and its CA; the API
server then forwards the path after ``/proxy`` to the Service's endpoints.

A POST through the proxy goes with a chunked body, not a Content-Length one. The API server's
proxy is Go's ReverseProxy; with a Content-Length body its transport reads the inbound body once
more after the last byte, and when the backend has already answered (vLLM sends its stream's
headers within milliseconds) that read fails on a body the server closed when it wrote those
headers. The transport then closes the backend connection and the client's stream ends mid-body
("incomplete chunked read"; golang/go#40747). With a chunked body the backend cannot answer
before that last read: the body's end is the last thing the proxy forwards. Measured here, under
load, 26 of 120 streamed requests through the local API server cut with a Content-Length body,
0 of 120 chunked.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from llm_on_eks.kube.access import kubeconfig_path
from llm_on_eks.plan.types import ClusterAccess, ServingSection

# A check that reads /metrics or /health must not hang a task; the OpenAI calls set their own.
HTTP_TIMEOUT_S = 30.0


def proxy_path(namespace: str, service: str, port: int | str) -> str:
    """A Service through the API server (the chart names the release's Service after the release)."""
    return f"/api/v1/namespaces/{namespace}/services/{service}:{port}/proxy"


def describe_base_url(serving: ServingSection) -> str:
    return serving["base_url"] or \
        f"<Kubernetes API server>{proxy_path(serving['namespace'], serving['release'], serving['port'])}"


@dataclass(frozen=True)
class Endpoint:
    """The server's root URL and what it takes to be let in.

    ``headers`` may hold a bearer token: only ``description`` is meant for logs and errors.
    """

    base_url: str
    description: str
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    ca_file: str | None = None
    verify: bool = True
    client_cert: tuple[str, str] | None = None
    via_api_server: bool = False  # through the API server's service proxy: a POST's body goes chunked

    def url(self, path: str) -> str:
        return self.base_url.rstrip("/") + "/" + path.lstrip("/")

    def tls(self) -> ssl.SSLContext | bool:
        """The API server's CA and client certificate as one SSL context (httpx's way)."""
        if not self.base_url.startswith("https:"):
            return True
        if not self.verify:
            return False
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.client_cert:
            context.load_cert_chain(*self.client_cert)
        return context

    def http_client(self, timeout: float = HTTP_TIMEOUT_S):
        """A plain HTTP client for the non-OpenAI paths (/metrics, /health)."""
        import httpx

        return httpx.Client(headers=self.headers, verify=self.tls(), timeout=timeout)

    def openai_client(self, *, timeout: float, asynchronous: bool = False, max_retries: int = 0):
        """An OpenAI client for ``/v1``; retries are the caller's (bounded by its deadline) unless
        ``max_retries`` lets the client retry connection errors, 408/409/429 and 5xx itself."""
        import openai

        token = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        # Without a token (client-certificate auth, or a server without --api-key) the request
        # goes without an Authorization header rather than with a made-up key.
        steps = ([] if token else [_drop_authorization]) + ([_chunked_body] if self.via_api_server else [])
        hooks = {"request": [_async(step) for step in steps] if asynchronous else steps}
        kwargs: dict[str, Any] = {"base_url": self.url("/v1"), "timeout": timeout, "max_retries": max_retries,
                                  "api_key": token or "none"}
        if asynchronous:
            http = openai.DefaultAsyncHttpxClient(verify=self.tls(), event_hooks=hooks)
            return openai.AsyncOpenAI(http_client=http, **kwargs)
        return openai.OpenAI(http_client=openai.DefaultHttpxClient(verify=self.tls(), event_hooks=hooks), **kwargs)


def _drop_authorization(request) -> None:
    request.headers.pop("Authorization", None)


def _chunked_body(request) -> None:
    """Send a request body chunked (see the module docstring): the body is unchanged, only its framing."""
    if int(request.headers.get("Content-Length", "0")):
        del request.headers["Content-Length"]
        request.headers["Transfer-Encoding"] = "chunked"


def _async(hook):
    async def run(request) -> None:
        hook(request)
    return run


def direct_endpoint(base_url: str) -> Endpoint:
    """A server reached at its own URL (ingress, or a local server); ``/v1`` is added here."""
    root = base_url.rstrip("/").removesuffix("/v1")
    return Endpoint(base_url=root, description=root)


def service_proxy_endpoint(kubeconfig: str, namespace: str, service: str, port: int | str) -> Endpoint:
    """The Service reached through the API server named by ``kubeconfig``, with its credentials."""
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    # Runs the exec plugin / refresh hook, so an EKS token is fresh when the check starts. The
    # client keeps a kubeconfig's token under "BearerToken" ("authorization" is its old name).
    authorization = configuration.get_api_key_with_prefix("BearerToken", alias="authorization")
    path = proxy_path(namespace, service, port)
    client_cert = (configuration.cert_file, configuration.key_file) if configuration.cert_file else None
    return Endpoint(
        base_url=configuration.host.rstrip("/") + path,
        description=f"{configuration.host}{path}",
        headers={"Authorization": authorization} if authorization else {},
        ca_file=configuration.ssl_ca_cert,
        verify=configuration.verify_ssl,
        client_cert=client_cert,
        via_api_server=True,
    )


@contextmanager
def open_endpoint(access: ClusterAccess, *, base_url: str | None, namespace: str, release: str,
                  port: int | str) -> Iterator[Endpoint]:
    """A release's endpoint: ``base_url`` if set, else the service proxy of its Service on the
    cluster, reached the way every cluster-side step gets in."""
    if base_url:
        yield direct_endpoint(base_url)
        return

    with kubeconfig_path(access) as path:
        yield service_proxy_endpoint(path, namespace, release, port)


@contextmanager
def openai_client_for(handle: dict[str, Any], *, timeout: float = 300.0, max_retries: int = 2) -> Iterator[Any]:
    """An OpenAI client for the endpoint ``llm_endpoint`` hands a DAG's tasks (its ``endpoint``
    step's result): ``client.chat.completions.create(model=handle["model"], ...)``."""
    with open_endpoint(handle["access"], base_url=handle["base_url"], namespace=handle["namespace"],
                       release=handle["release"], port=handle["port"]) as found:
        yield found.openai_client(timeout=timeout, max_retries=max_retries)
