"""The control plane: encryption, logs, endpoint access and who administers it."""

from __future__ import annotations

import pytest

from domain.stack_config import StackConfig
from infra.cluster import ADMIN_POLICY_ARN
from tests import pulumi_mocks
from tests.pulumi_mocks import ACCOUNT_ID, Program, run_program

CLUSTER = "aws:eks/cluster:Cluster"


def test_secrets_are_envelope_encrypted_with_a_rotating_key(dev: Program) -> None:
    key = dev.one("aws:kms/key:Key")
    assert key.inputs["enableKeyRotation"] is True
    encryption = dev.one(CLUSTER).inputs["encryptionConfig"]
    assert encryption["resources"] == ["secrets"]
    assert encryption["provider"]["keyArn"].endswith(f"key/{key.name}")


def test_control_plane_settings_follow_config(dev: Program, dev_config: StackConfig) -> None:
    cluster = dev.one(CLUSTER).inputs
    assert cluster["name"] == "qwen-dev-dev"
    assert cluster["version"] == dev_config.cluster.kubernetes_version
    assert cluster["accessConfig"] == {
        "authenticationMode": "API",
        "bootstrapClusterCreatorAdminPermissions": False,
    }
    vpc = cluster["vpcConfig"]
    assert vpc["endpointPrivateAccess"] is True and vpc["endpointPublicAccess"] is True
    assert vpc["publicAccessCidrs"] == dev_config.cluster.endpoint_public_access_cidrs
    assert cluster["upgradePolicy"] == {"supportType": "STANDARD"}


def test_every_control_plane_log_type_goes_to_an_owned_log_group(dev: Program) -> None:
    cluster = dev.one(CLUSTER)
    assert set(cluster.inputs["enabledClusterLogTypes"]) == {
        "api",
        "audit",
        "authenticator",
        "controllerManager",
        "scheduler",
    }
    logs = dev.one("aws:cloudwatch/logGroup:LogGroup")
    assert logs.inputs["name"] == "/aws/eks/qwen-dev-dev/cluster"  # the group EKS writes to
    assert logs.inputs["retentionInDays"] > 0
    assert logs.name in dev.depends_on(cluster)


def _admin(program: Program) -> tuple[str, str]:
    entry = program.one("aws:eks/accessEntry:AccessEntry").inputs
    association = program.one("aws:eks/accessPolicyAssociation:AccessPolicyAssociation").inputs
    assert entry["type"] == "STANDARD"
    assert association["policyArn"] == ADMIN_POLICY_ARN
    assert association["accessScope"] == {"type": "cluster"}
    assert association["principalArn"] == entry["principalArn"]
    return entry["principalArn"], association["clusterName"]


def test_deploying_user_is_cluster_admin(dev: Program) -> None:
    assert _admin(dev) == (f"arn:aws:iam::{ACCOUNT_ID}:user/deployer", "qwen-dev-dev")


def test_sso_session_gets_its_role_not_the_session_arn(monkeypatch: pytest.MonkeyPatch) -> None:
    session = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/AWSReservedSSO_Admin_0123/jane@example.com"
    monkeypatch.setitem(
        pulumi_mocks.CALL_RESULTS,
        "aws:index/getCallerIdentity:getCallerIdentity",
        lambda _args: {"accountId": ACCOUNT_ID, "arn": session, "userId": "AROA", "id": "x"},
    )
    principal, _ = _admin(run_program("dev"))
    sso = "aws-reserved/sso.amazonaws.com"
    assert principal == f"arn:aws:iam::{ACCOUNT_ID}:role/{sso}/AWSReservedSSO_Admin_0123"
