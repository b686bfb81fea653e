"""A long-lived client (a trigger's, polling for hours) keeps renewing its EKS token: the
kubernetes client's own refresh hook must not push ours out. The real client and kubeconfig
loader, no server: the token each request would carry is read from the configuration."""

from __future__ import annotations

import json

from llm_on_eks.kube.access import Kubeconfig, _RenewingToken


def test_the_token_is_renewed_on_every_request_not_only_the_first(tmp_path):
    from kubernetes import client

    path = tmp_path / "kubeconfig"
    renewals = iter([False, False, True, False, True])

    def write(token: str) -> None:
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "eks",
            "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
            "contexts": [{"name": "eks", "context": {"cluster": "c", "user": "u"}}],
            "users": [{"name": "u", "user": {"token": token}}]}))

    # Stands in for _EksTokenKubeconfig.renew, which mints a new token only every 4 minutes
    # (REMINT_AFTER_S): what is under test is the client's hook calling it on every request.
    def renew() -> bool:
        renewed = next(renewals)
        if renewed:
            write(f"token-{renew.count}")
            renew.count += 1
        return renewed

    renew.count = 1
    write("token-0")
    configuration = client.Configuration()
    _RenewingToken(configuration, Kubeconfig(str(path), renew))
    # What each request sends (ApiClient.update_params_for_auth -> auth_settings -> this).
    sent = [configuration.get_api_key_with_prefix("BearerToken") for _ in range(5)]
    assert sent == ["Bearer token-0", "Bearer token-0", "Bearer token-1", "Bearer token-1", "Bearer token-2"]
