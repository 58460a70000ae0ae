"""The policy pack's name and its policies, importable without serving the pack."""

from __future__ import annotations

from pulumi_policy import EnforcementLevel, Policy

from policies import (
    eks,
    iam,
    keda,
    kubernetes,
    launch_templates,
    loadtest,
    node_groups,
    security_groups,
)
from policies.tags import COST_TAGS_POLICY

NAME = "qwen-stress-guardrails"
DESCRIPTION = (
    "Cost and security guardrails of qwen-stress: GPU budget and shape, cost tags, EKS, IAM, "
    "network, Kubernetes workloads and ephemeral load-test stacks."
)
DEFAULT_LEVEL = EnforcementLevel.MANDATORY
"""Policies that set no level of their own stop ``pulumi preview`` and ``pulumi up``."""

POLICIES: list[Policy] = [
    COST_TAGS_POLICY,
    *node_groups.POLICIES,
    *launch_templates.POLICIES,
    *eks.POLICIES,
    *iam.POLICIES,
    *security_groups.POLICIES,
    *kubernetes.POLICIES,
    *keda.POLICIES,
    *loadtest.POLICIES,
]
