"""The kubeconfig of the cluster: no stored credential, a token from ``aws eks get-token``.

The file holds only the endpoint and CA; every ``kubectl`` call (and the load-test runner)
gets a 15-minute token from the AWS CLI with whatever AWS identity it runs as (the stack's
``aws:profile``, when it names one). It is still a
secret output: the endpoint and cluster name are more than a stranger needs to know.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi


def render(
    cluster_name: str,
    endpoint: str,
    certificate_authority: str,
    region: str,
    profile: str | None = None,
) -> str:
    """A kubeconfig document (JSON, which kubectl reads as YAML) for one EKS cluster.

    With ``profile`` (the stack's ``aws:profile``) the token comes from that AWS CLI profile, the
    identity the access entry was made for, whatever profile the shell has selected.
    """
    exec_: dict[str, Any] = {
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "command": "aws",
        "args": [
            "eks",
            "get-token",
            "--cluster-name",
            cluster_name,
            "--region",
            region,
            "--output",
            "json",
        ],
        "interactiveMode": "Never",
    }
    if profile:
        exec_["env"] = [{"name": "AWS_PROFILE", "value": profile}]
    document: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster_name,
                "cluster": {
                    "server": endpoint,
                    "certificate-authority-data": certificate_authority,
                },
            }
        ],
        "contexts": [{"name": cluster_name, "context": {"cluster": cluster_name, "user": "aws"}}],
        "current-context": cluster_name,
        "users": [{"name": "aws", "user": {"exec": exec_}}],
    }
    return json.dumps(document, indent=2)


def kubeconfig(
    cluster_name: pulumi.Input[str],
    endpoint: pulumi.Input[str],
    certificate_authority: pulumi.Input[str],
    region: str,
    profile: str | None = None,
) -> pulumi.Output[str]:
    """The kubeconfig as a secret output."""
    return pulumi.Output.secret(
        pulumi.Output.all(cluster_name, endpoint, certificate_authority).apply(
            lambda parts: render(str(parts[0]), str(parts[1]), str(parts[2]), region, profile)
        )
    )
