"""IAM: no administrator grant, and the Cluster Autoscaler's writes confined to its own groups.

Policy documents reach a policy as JSON text (``RolePolicy.policy``) or as objects; both are
read. A statement's ``Action`` and ``Resource`` may be one string or a list, and action names
match case-insensitively with ``*`` wildcards, as IAM evaluates them.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterator, Mapping
from typing import Any

from policies.resources import Resource, is_list, items, mapping
from policies.rule import Config, resource_policy

ADMINISTRATOR_ACCESS = "arn:aws:iam::aws:policy/AdministratorAccess"
"""The AWS managed policy that allows ``*`` on ``*``."""

DOCUMENT_PROPERTIES: dict[str, str] = {
    "aws:iam/policy:Policy": "policy",
    "aws:iam/rolePolicy:RolePolicy": "policy",
    "aws:iam/userPolicy:UserPolicy": "policy",
    "aws:iam/groupPolicy:GroupPolicy": "policy",
}
"""Resource types whose one property is a policy document."""
ATTACHMENTS = (
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
    "aws:iam/userPolicyAttachment:UserPolicyAttachment",
    "aws:iam/groupPolicyAttachment:GroupPolicyAttachment",
    "aws:iam/policyAttachment:PolicyAttachment",
)
ROLE = "aws:iam/role:Role"

AUTOSCALER_WRITES = (
    "autoscaling:SetDesiredCapacity",
    "autoscaling:TerminateInstanceInAutoScalingGroup",
    "autoscaling:UpdateAutoScalingGroup",
)
"""What the Cluster Autoscaler changes on an Auto Scaling group (its AWS README)."""
AUTOSCALER_TAG_CONDITION = "resourcetag/k8s.io/cluster-autoscaler/"
"""Condition keys ``aws:ResourceTag/k8s.io/cluster-autoscaler/<cluster>`` (or the
``autoscaling:`` spelling): EKS tags every managed node group's ASG with them."""


def _document(value: Any) -> Mapping[str, Any]:
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return mapping(value)


def documents(resource: Resource) -> list[Mapping[str, Any]]:
    """Every policy document a resource grants (inline policies of a role included)."""
    key = DOCUMENT_PROPERTIES.get(resource.type)
    if key is not None:
        return [_document(resource.get(key))]
    if resource.type == ROLE:
        return [_document(mapping(p).get("policy")) for p in items(resource.get("inlinePolicies"))]
    return []


def statements(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """A document's statements (IAM accepts one statement object as well as a list)."""
    raw = document.get("Statement")
    found = items(raw) if is_list(raw) else [raw]
    return [s for s in found if isinstance(s, Mapping)]


def _strings(value: Any) -> list[str]:
    return [str(v) for v in items(value)] if is_list(value) else ([str(value)] if value else [])


def allows(statement: Mapping[str, Any]) -> bool:
    """Whether a statement grants (``Effect: Allow``) rather than denies."""
    return str(statement.get("Effect", "")).lower() == "allow"


def actions(statement: Mapping[str, Any]) -> list[str]:
    """The statement's ``Action`` patterns."""
    return _strings(statement.get("Action"))


def resources(statement: Mapping[str, Any]) -> list[str]:
    """The statement's ``Resource`` patterns."""
    return _strings(statement.get("Resource"))


def _admin(resource: Resource, _config: Config) -> Iterator[str]:
    if resource.type in ATTACHMENTS and resource.get("policyArn") == ADMINISTRATOR_ACCESS:
        yield (
            f"{resource.name}: attaches AdministratorAccess (every action on every resource); "
            "attach a policy that lists the actions this principal needs"
        )
    if resource.type == ROLE and ADMINISTRATOR_ACCESS in _strings(
        resource.get("managedPolicyArns")
    ):
        yield f"{resource.name}: managedPolicyArns holds AdministratorAccess; grant what it needs"
    for document in documents(resource):
        for statement in statements(document):
            wildcard_action = any(a in ("*", "*:*") for a in actions(statement))
            if allows(statement) and wildcard_action and "*" in resources(statement):
                yield (
                    f"{resource.name}: statement {statement.get('Sid') or '(no Sid)'} allows "
                    "action * on resource *; list the actions and resources it needs"
                )


IAM_NO_ADMIN = resource_policy(
    "iam-no-admin",
    "No IAM policy allows every action (*) on every resource (*) or attaches AdministratorAccess.",
    _admin,
)


def _grants_autoscaler_write(statement: Mapping[str, Any]) -> bool:
    patterns = [a.lower() for a in actions(statement) if a not in ("*", "*:*")]
    return any(fnmatch.fnmatchcase(w.lower(), p) for p in patterns for w in AUTOSCALER_WRITES)


def _conditioned_on_cluster_tag(statement: Mapping[str, Any]) -> bool:
    for operator_block in mapping(statement.get("Condition")).values():
        for key in mapping(operator_block):
            if AUTOSCALER_TAG_CONDITION in str(key).lower():
                return True
    return False


def _autoscaler(resource: Resource, _config: Config) -> Iterator[str]:
    for document in documents(resource):
        for statement in statements(document):
            unscoped = any("*" in r for r in resources(statement))
            if (
                allows(statement)
                and _grants_autoscaler_write(statement)
                and unscoped
                and not _conditioned_on_cluster_tag(statement)
            ):
                yield (
                    f"{resource.name}: statement {statement.get('Sid') or '(no Sid)'} lets "
                    f"{', '.join(actions(statement))} resize or shrink any Auto Scaling group "
                    "in the account; add a Condition on "
                    "aws:ResourceTag/k8s.io/cluster-autoscaler/<cluster> = owned"
                )


IAM_AUTOSCALER_CONDITION = resource_policy(
    "iam-autoscaler-condition",
    "Auto Scaling write actions (the Cluster Autoscaler's) on unnamed groups are conditioned "
    "on the cluster's ownership tag.",
    _autoscaler,
)

POLICIES = (IAM_NO_ADMIN, IAM_AUTOSCALER_CONDITION)
