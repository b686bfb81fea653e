"""One way into the cluster for every cluster-side step and trigger, API client and helm CLI alike.

An Airflow Kubernetes connection (existing clusters reached another way) when the plan names
one; otherwise the EKS cluster, with the token the Amazon provider mints for ``EksPodOperator``
(``fetch_access_token_for_cluster``: a presigned STS ``GetCallerIdentity``, as ``aws eks
get-token``). The token is minted here, in the worker's process, from the hook's live botocore
session, and written into a private kubeconfig. The provider's own kubeconfig runs its exec
plugin instead, a new Python process that imports Airflow: 3-4 s on 2 cores for every API client
and every helm command (a deploy makes dozens), for the same token.

Long waits outlive both credentials (an assumed role's session, 1 hour by default) and tokens
(15 minutes, apache/airflow#63020), so neither is frozen at the start of a step: a new token is
minted whenever the session's credentials change (botocore renews an assumed role's session 15
minutes before it ends) or the token is ``REMINT_AFTER_S`` old. An API client checks before every
request (the kubernetes client's refresh hook); each helm command starts after the same check, so
a token is at most ``REMINT_AFTER_S`` old when a helm command starts and outlives it (the longest,
an uninstall, stops at its own 10-minute ``--timeout``).

``ClusterAccess`` (the plan's ``target["access"]``) is the few ids that takes: what a trigger
serializes instead of the plan.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from llm_on_eks.plan.types import ClusterAccess


@dataclass
class Kubeconfig:
    """A kubeconfig file, and how to bring the token it holds up to date (True when it wrote a
    new one, which a client that read the file must read again)."""

    path: str
    renew: Callable[[], bool] = lambda: False


# EKS accepts a token for 15 minutes after it was signed (aws-iam-authenticator, pkg/token); a new
# one at 4 minutes leaves any helm command (at most 10 minutes) a token that outlives it.
REMINT_AFTER_S = 240


class _EksTokenKubeconfig:
    """A kubeconfig file holding an EKS token, kept in step with a botocore session."""

    def __init__(self, hook: Any, access: ClusterAccess, path: str) -> None:
        from airflow.providers.amazon.aws.hooks.sts import StsHook

        region = access["region"]
        cluster = hook.conn.describe_cluster(name=access["cluster"])["cluster"]
        # As the provider's kubeconfig: the regional STS endpoint (botocore's default), or the
        # connection's endpoint_url for STS.
        sts = StsHook(aws_conn_id=access["aws_conn_id"], region_name=region).conn_client_meta.endpoint_url
        self.sts_url = f"{sts.rstrip('/')}/?Action=GetCallerIdentity&Version=2011-06-15"
        self.session, self.path, self.access = hook.get_session(region_name=region), path, access
        self.config = {
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": access["cluster"], "cluster": {
                "server": cluster["endpoint"], "certificate-authority-data": cluster["certificateAuthority"]["data"]}}],
            "contexts": [{"name": "eks", "context": {"cluster": access["cluster"], "user": "airflow",
                                                     "namespace": access["namespace"]}}],
            "current-context": "eks",
        }
        self.minted_from, self.minted_at = None, 0.0

    def renew(self) -> bool:
        from airflow.providers.amazon.aws.utils.eks_get_token import fetch_access_token_for_cluster

        credentials = self.session.get_credentials()
        if credentials is None:
            raise RuntimeError("the AWS connection gives no credentials any more (expired or removed)")
        frozen = credentials.get_frozen_credentials()  # botocore refreshes a session near its end here
        if frozen == self.minted_from and time.monotonic() - self.minted_at < REMINT_AFTER_S:
            return False
        token = fetch_access_token_for_cluster(self.access["cluster"], self.sts_url, self.access["region"], self.session)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
        with os.fdopen(fd, "w") as handle:
            json.dump({**self.config, "users": [{"name": "airflow", "user": {"token": token}}]}, handle)
        self.minted_from, self.minted_at = frozen, time.monotonic()
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
    with tempfile.TemporaryDirectory(prefix="eks-") as directory:  # mode 0700: the token stays private
        config = _EksTokenKubeconfig(hook, access, os.path.join(directory, "kubeconfig"))
        config.renew()
        yield Kubeconfig(config.path, config.renew)


@contextmanager
def kubeconfig_path(access: ClusterAccess) -> Iterator[str]:
    """A kubeconfig file for a short use (a check through the service proxy), its token fresh."""
    with kubeconfig(access) as config:
        yield config.path


class _RenewingToken:
    """The kubernetes client's refresh hook (run before every request): the file read again when
    it holds a new EKS token, else the client's own check of an exec plugin's token expiry (a
    Kubernetes connection's kubeconfig may use one)."""

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
            # The loader's hook installs itself again as it runs (kubernetes' config/kube_config.py,
            # _set_config): put this one back, or no later request renews the token, and a wait
            # longer than the token's 15 minutes meets 401 Unauthorized.
            self.on_expiry = configuration.refresh_api_key_hook
            configuration.refresh_api_key_hook = self


# What the client retries before a step sees it (urllib3's Retry): 429 from API Priority and
# Fairness, whose Retry-After it waits out (Kubernetes docs, "API Priority and Fairness"), and
# 500/502/503/504 while a control plane scales or restarts, with backoff (EKS best practices,
# "Control plane monitoring": clients retry with backoff); dropped connections too. Every verb: a
# create resent after a lost answer meets 409 AlreadyExists, which each create here takes as
# found (the Lease's, the token Secret's, the namespace's, the Job's, the volumes').
RETRIES = {"total": 8, "connect": 3, "read": 2, "status": 5, "backoff_factor": 0.5, "backoff_max": 8,
           "status_forcelist": (429, 500, 502, 503, 504), "allowed_methods": None, "raise_on_status": False,
           "respect_retry_after_header": True}


@contextmanager
def api_client(access: ClusterAccess) -> Iterator[Any]:
    """A kubernetes ApiClient for the cluster, good for as long as the context lasts."""
    from kubernetes import client
    from urllib3.util.retry import Retry

    with kubeconfig(access) as config:
        configuration = client.Configuration()
        configuration.retries = Retry(**RETRIES)
        _RenewingToken(configuration, config)
        api = client.ApiClient(configuration=configuration)
        try:
            yield api
        finally:
            api.close()
