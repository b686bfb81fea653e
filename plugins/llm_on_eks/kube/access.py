"""One way into the cluster for every cluster-side step and trigger, API client and helm CLI alike.

An Airflow Kubernetes connection (existing clusters reached another way) when the plan names
one; otherwise the EKS cluster, in the Amazon provider's own pattern (``EksPodOperator``):
``EksHook.generate_config_file_with_credentials`` writes a kubeconfig whose exec plugin sources a
private credentials file and mints an EKS token (a presigned STS ``GetCallerIdentity``) from it.

Long waits outlive both credentials (an assumed role's session, 1 hour by default) and tokens
(15 minutes, apache/airflow#63020), so neither is frozen at the start of a step:

- the credentials file is rewritten from the hook's live botocore session whenever that session's
  credentials change; botocore renews an assumed role's session 15 minutes before it ends, so a
  token is always minted from credentials that outlive it;
- an API client mints a new token at once when the credentials change, and otherwise when the
  token expires (the exec plugin's ``expirationTimestamp``, 14 minutes, read by the kubernetes
  client's refresh hook);
- the helm CLI (client-go) runs the same exec plugin whenever its token expires, and each helm
  call starts after a renewal (``Kubeconfig.renew``).

``ClusterAccess`` (the plan's ``target["access"]``) is the few ids that takes: what a trigger
serializes instead of the plan.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from llm_on_eks.plan.types import ClusterAccess


@dataclass
class Kubeconfig:
    """A kubeconfig file, and how to bring the credentials it uses up to date (True when they
    changed: a token minted before is from old credentials)."""

    path: str
    renew: Callable[[], bool] = lambda: False


class _CredentialsFile:
    """The file the EKS kubeconfig's exec plugin sources, kept in step with a botocore session."""

    def __init__(self, session: Any, path: str) -> None:
        self.session, self.path, self.written = session, path, None

    def renew(self) -> bool:
        credentials = self.session.get_credentials()
        if credentials is None:
            raise RuntimeError("the AWS connection gives no credentials any more (expired or removed)")
        frozen = credentials.get_frozen_credentials()  # botocore refreshes a session near its end here
        if frozen == self.written:
            return False
        # The provider's format and mode (EksHook._secure_credential_context): sourced by `sh`.
        fd = os.open(self.path, os.O_WRONLY | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
        with os.fdopen(fd, "w") as handle:
            handle.write(f"export AWS_ACCESS_KEY_ID='{frozen.access_key}'\n"
                         f"export AWS_SECRET_ACCESS_KEY='{frozen.secret_key}'\n")
            if frozen.token:
                handle.write(f"export AWS_SESSION_TOKEN='{frozen.token}'\n")
        self.written = frozen
        return True


@contextmanager
def kubeconfig(access: ClusterAccess) -> Iterator[Kubeconfig]:
    """A kubeconfig for the cluster, valid while the context lasts."""
    conn_id = access["kubernetes_conn_id"]
    if conn_id:
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

        hook = KubernetesHook(conn_id=conn_id)
        path = hook._get_field("kube_config_path")
        if path:
            yield Kubeconfig(path)
            return
        inline = hook._get_field("kube_config")
        if not inline:
            raise ValueError(f"Kubernetes connection {conn_id!r} has neither kube_config_path nor kube_config")
        with tempfile.NamedTemporaryFile("w", suffix=".kubeconfig") as handle:
            handle.write(inline if isinstance(inline, str) else json.dumps(inline))
            handle.flush()
            yield Kubeconfig(handle.name)
        return
    from airflow.providers.amazon.aws.hooks.eks import EksHook

    hook = EksHook(aws_conn_id=access["aws_conn_id"], region_name=access["region"])
    with hook.generate_config_file_with_credentials(eks_cluster_name=access["cluster"],
                                                    pod_namespace=access["namespace"]) as (path, credentials_path):
        credentials = _CredentialsFile(hook.get_session(region_name=access["region"]), credentials_path)
        credentials.renew()
        yield Kubeconfig(path, credentials.renew)


@contextmanager
def kubeconfig_path(access: ClusterAccess) -> Iterator[str]:
    """A kubeconfig file for a short use (a helm command, a check): credentials renewed first."""
    with kubeconfig(access) as config:
        yield config.path


class _RenewingToken:
    """The kubernetes client's refresh hook (run before every request): a new token when the
    credentials changed, else the client's own check of the token's expiry."""

    def __init__(self, configuration: Any, config: Kubeconfig) -> None:
        self.configuration, self.config = configuration, config
        self.load()

    def load(self) -> None:
        from kubernetes import config as kube_config

        kube_config.load_kube_config(config_file=self.config.path, client_configuration=self.configuration)
        self.on_expiry = self.configuration.refresh_api_key_hook  # None with client certificates
        self.configuration.refresh_api_key_hook = self

    def __call__(self, configuration: Any) -> None:
        if self.config.renew():
            self.load()
        elif self.on_expiry is not None:
            self.on_expiry(configuration)


@contextmanager
def api_client(access: ClusterAccess) -> Iterator[Any]:
    """A kubernetes ApiClient for the cluster, good for as long as the context lasts."""
    from kubernetes import client

    with kubeconfig(access) as config:
        configuration = client.Configuration()
        _RenewingToken(configuration, config)
        api = client.ApiClient(configuration=configuration)
        try:
            yield api
        finally:
            api.close()
