"""The ephemeral load-test stack under Pulumi mocks: what a reviewer of `pulumi up` would check."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import subprocess
from collections import Counter
from dataclasses import dataclass
from functools import cache
from typing import Any

import pytest

from domain import topology, versions
from domain.vllm_args import API_KEY_ENV
from loadtest.cloud import contract, manifests
from loadtest.cloud.spec import LoadGenOptions, LoadTestSpec
from loadtest.cloud.stack import node_group_name, program
from tests.k8s_manifests import (
    SECRET_SIG,
    checkov_binary,
    is_core,
    schema_errors,
    write_manifests,
)
from tests.k8s_manifests import manifests as rendered
from tests.loadtest_specs import API_KEY, KUBECONFIG, LOCK, RUN_ID, WHEEL, spec
from tests.pulumi_mocks import Program, run_function

NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
JOB = "kubernetes:batch/v1:Job"


def render(s: LoadTestSpec) -> Program:
    return run_function(program(s, lock=LOCK), stack=s.run_id)


@cache
def image_run() -> Program:
    return render(spec())


@cache
def wheel_run() -> Program:
    return render(spec(code=WHEEL))


def _objects(p: Program, kind: str) -> dict[str, dict[str, Any]]:
    return {m["metadata"]["name"]: m for m in rendered(p) if m["kind"] == kind}


def _pods(p: Program) -> dict[str, dict[str, Any]]:
    return {name: job["spec"]["template"] for name, job in _objects(p, "Job").items()}


def _containers(p: Program) -> list[dict[str, Any]]:
    return [
        c
        for pod in _pods(p).values()
        for c in pod["spec"]["containers"] + pod["spec"].get("initContainers", [])
    ]


@pytest.mark.parametrize(
    ("peak", "nodes", "workers"),
    [(1, 1, 6), (400, 1, 6), (896, 2, 13), (1000, 2, 13), (2000, 3, 20)],
)
def test_node_group_is_sized_from_the_plan_peak_at_a_fixed_size(
    peak: int, nodes: int, workers: int
) -> None:
    p = render(spec(peak_users=peak))
    group = p.one(NODE_GROUP)
    assert group.inputs["scalingConfig"] == {
        "minSize": nodes,
        "maxSize": nodes,
        "desiredSize": nodes,
    }
    job = _objects(p, "Job")["locust-worker"]["spec"]
    assert (job["completions"], job["parallelism"]) == (workers, workers)
    # Every worker carries at most 128 streams and fits a slot next to the master.
    assert peak / workers <= 128
    assert workers + 1 <= nodes * (8 - 1)
    master = _objects(p, "Job")["locust-master"]["spec"]["template"]["spec"]["containers"][0]
    assert {"name": contract.ENV_WORKERS, "value": str(workers)} in master["env"]
    assert p.outputs["workers"] == workers
    assert p.outputs["nodes"] == nodes


def test_existing_nodes_create_no_aws_resource_and_run_on_the_system_nodes() -> None:
    p = render(spec(peak_users=200, loadgen=LoadGenOptions(nodes="existing")))
    assert not [r for r in p.resources if r.type.startswith(("aws:", "pulumi:providers:aws"))]
    for pod in _pods(p).values():
        assert pod["spec"]["nodeSelector"] == {topology.ROLE_LABEL: topology.SYSTEM_ROLE}
        assert "tolerations" not in pod["spec"]
    assert _objects(p, "Job")["locust-worker"]["spec"]["completions"] == 2
    assert p.outputs["nodeGroupName"] is None
    assert p.outputs["hourlyUsd"] == 0


def test_spot_by_default_on_demand_by_option() -> None:
    assert image_run().one(NODE_GROUP).inputs["capacityType"] == "SPOT"
    on_demand = render(spec(loadgen=LoadGenOptions(capacity_type="on-demand")))
    assert on_demand.one(NODE_GROUP).inputs["capacityType"] == "ON_DEMAND"
    assert on_demand.outputs["hourlyUsd"] == 0.357  # c7i.2xlarge on demand, from the catalog
    assert image_run().outputs["hourlyUsd"] == 0.1737  # its worst observed spot price


def test_load_generator_nodes_are_cpu_only_labelled_tainted_and_named_after_the_run() -> None:
    group = image_run().one(NODE_GROUP).inputs
    assert group["instanceTypes"] == ["c7i.2xlarge"]
    assert group["amiType"] == versions.SYSTEM_AMI_TYPE
    assert group["nodeGroupName"] == node_group_name(RUN_ID)
    assert len(group["nodeGroupName"]) <= 63
    assert group["labels"][topology.ROLE_LABEL] == topology.LOADGEN_ROLE
    assert group["taints"] == [
        {"key": topology.LOADGEN_TAINT_KEY, "value": "true", "effect": "NO_SCHEDULE"}
    ]
    assert group["version"] == "1.35"
    assert group["subnetIds"] == ["subnet-0aaa", "subnet-0bbb"]
    assert group["nodeRoleArn"].endswith(":role/nodes-node-0a1b2c3")
    for pod in _pods(image_run()).values():
        assert pod["spec"]["nodeSelector"] == {topology.ROLE_LABEL: topology.LOADGEN_ROLE}
        assert pod["spec"]["tolerations"] == [
            {
                "key": topology.LOADGEN_TAINT_KEY,
                "operator": "Equal",
                "value": "true",
                "effect": "NoSchedule",
            }
        ]
        terms = pod["spec"]["affinity"]["nodeAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"
        ]["nodeSelectorTerms"]
        keys = {(e["key"], e["operator"]) for t in terms for e in t["matchExpressions"]}
        assert (topology.ACCELERATOR_LABEL, "DoesNotExist") in keys  # never on a GPU node


def _default_tags(p: Program) -> dict[str, str]:
    provider = p.one("pulumi:providers:aws")
    tags: dict[str, str] = json.loads(provider.inputs["defaultTags"])["tags"]
    return tags


def test_cost_tags_and_run_id_reach_instances_volumes_and_network_interfaces() -> None:
    p = image_run()
    expected = {
        "owner": "ml-platform",
        "cost-center": "cc-1234",
        "project": topology.LOADTEST_PROJECT,
        "stack": RUN_ID,
        topology.RUN_ID_TAG: RUN_ID,
        "team": "infer",
    }
    assert _default_tags(p) == expected
    template = p.one(LAUNCH_TEMPLATE)
    specs = {s["resourceType"]: s["tags"] for s in template.inputs["tagSpecifications"]}
    assert specs == {"instance": expected, "volume": expected, "network-interface": expected}
    # The template and the group are made by the load-test provider (its tags, its region).
    for r in (template, p.one(NODE_GROUP)):
        assert r.provider is not None and "loadtest-aws" in r.provider


def test_launch_template_requires_imdsv2_and_an_encrypted_gp3_root() -> None:
    inputs = image_run().one(LAUNCH_TEMPLATE).inputs
    assert inputs["metadataOptions"] == {
        "httpEndpoint": "enabled",
        "httpTokens": "required",
        "httpPutResponseHopLimit": 1,
    }
    (disk,) = inputs["blockDeviceMappings"]
    assert disk["ebs"]["volumeType"] == "gp3"
    assert disk["ebs"]["encrypted"] == "true"


def test_jobs_stop_at_the_plan_length_plus_a_margin_and_are_never_retried() -> None:
    p = render(spec(plan_seconds=5400.2))
    for job in _objects(p, "Job").values():
        assert job["spec"]["activeDeadlineSeconds"] == 5401 + 900
        assert job["spec"]["backoffLimit"] == 0
        assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
        # Without it `pulumi up` would wait for the Job to finish: the whole run.
        assert job["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true"
    assert _objects(p, "Job")["locust-master"]["spec"]["completions"] == 1


def test_a_disrupted_worker_is_replaced_and_any_other_failure_fails_the_run() -> None:
    jobs = _objects(image_run(), "Job")
    worker = jobs["locust-worker"]["spec"]
    assert worker["podFailurePolicy"] == {
        "rules": [
            {
                "action": "Ignore",
                "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
            }
        ]
    }
    assert worker["podReplacementPolicy"] == "Failed"
    assert worker["completionMode"] == "Indexed"
    # A second master would start the plan over: its pod is never replaced.
    assert "podFailurePolicy" not in jobs["locust-master"]["spec"]


def test_namespace_is_labelled_for_the_vllm_policy_and_carries_its_expiry() -> None:
    (ns,) = _objects(image_run(), "Namespace").values()
    assert ns["metadata"]["name"] == f"loadtest-{RUN_ID}"
    assert ns["metadata"]["labels"][topology.ROLE_LABEL] == topology.LOADTEST_ROLE
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert ns["metadata"]["annotations"] == {topology.EXPIRES_ANNOTATION: "2026-01-01T14:15:00Z"}


def test_no_load_balancer_only_a_cluster_ip_service_for_the_master() -> None:
    services = _objects(image_run(), "Service")
    assert list(services) == [contract.MASTER_SERVICE]
    service = services[contract.MASTER_SERVICE]["spec"]
    assert service["type"] == "ClusterIP"
    assert {(port["name"], port["port"]) for port in service["ports"]} == {
        ("locust", contract.LOCUST_PORT),
        ("api", contract.MASTER_API_PORT),
    }
    assert not [
        r
        for r in image_run().resources
        if "LoadBalancer" in json.dumps(r.inputs) or "elb" in r.type
    ]


@pytest.mark.parametrize("run", [image_run, wheel_run])
def test_every_container_has_requests_equal_to_limits(run: Any) -> None:
    for container in _containers(run()):
        resources = container["resources"]
        assert resources["requests"] == resources["limits"], container["name"]
        assert set(resources["requests"]) == {"cpu", "memory"}


@pytest.mark.parametrize("run", [image_run, wheel_run])
def test_pods_are_restricted_and_get_no_service_account_token(run: Any) -> None:
    p = run()
    for pod in _pods(p).values():
        spec_ = pod["spec"]
        assert spec_["automountServiceAccountToken"] is False
        assert spec_["enableServiceLinks"] is False
        assert spec_["securityContext"]["runAsNonRoot"] is True
        assert spec_["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in _containers(p):
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        }
    accounts = _objects(p, "ServiceAccount")
    assert set(accounts) == {"locust-master", "locust-worker"}
    assert all(a["automountServiceAccountToken"] is False for a in accounts.values())
    # No pod calls the Kubernetes API, so there is nothing to grant.
    assert not [r for r in p.resources if "rbac.authorization" in r.type]


def _plain_strings(value: Any) -> list[str]:
    """Every string in an input, except inside values Pulumi carries as secrets."""
    if isinstance(value, dict):
        if value.get(SECRET_SIG[0]) == SECRET_SIG[1]:
            return []
        return [s for v in value.values() for s in _plain_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _plain_strings(v)]
    return [value] if isinstance(value, str) else []


def _is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SECRET_SIG[0]) == SECRET_SIG[1]


@pytest.mark.parametrize("run", [image_run, wheel_run])
def test_api_key_and_kubeconfig_are_secrets_and_in_no_plain_input(run: Any) -> None:
    p = run()
    for r in p.resources:
        for text in _plain_strings(r.inputs):
            assert API_KEY not in text, f"{r.type} {r.name}"
            assert "kc-marker" not in text, f"{r.type} {r.name}"
    secret = p.one("kubernetes:core/v1:Secret")
    assert _is_secret(secret.inputs["stringData"])
    assert secret.inputs["stringData"]["value"] == {manifests.API_KEY_SECRET_KEY: API_KEY}
    provider = p.one("pulumi:providers:kubernetes")
    assert _is_secret(provider.inputs["kubeconfig"])
    assert provider.inputs["kubeconfig"]["value"] == KUBECONFIG
    for container in _containers(p):
        keys = [e for e in container["env"] if e["name"] == API_KEY_ENV]
        # The installer never needs the key; every container that runs the code gets it by ref.
        assert keys == (
            []
            if container["name"] == "install"
            else [
                {
                    "name": API_KEY_ENV,
                    "valueFrom": {"secretKeyRef": {"name": "vllm-api-key", "key": "api-key"}},
                }
            ]
        )


def test_the_program_registers_exactly_the_rendered_manifests() -> None:
    for s, p in ((spec(), image_run()), (spec(code=WHEEL), wheel_run())):
        expected = [m for m in manifests.objects(s, LOCK) if m["kind"] != "Secret"]
        registered = [m for m in rendered(p) if m["kind"] != "Secret"]
        for m in registered:
            m.pop("metadata", None)
        for m in expected:
            m.pop("metadata", None)
        assert registered == expected


@pytest.mark.parametrize("run", [image_run, wheel_run])
def test_objects_validate_against_the_kubernetes_schema(run: Any) -> None:
    objects = [m for m in rendered(run()) if is_core(m)]
    assert Counter(m["kind"] for m in objects)["Job"] == 2
    assert [e for m in objects for e in schema_errors(m, "1.35")] == []


def test_the_wheel_path_ships_the_wheel_and_installs_it_before_the_role_starts() -> None:
    p = wheel_run()
    (code,) = [m for m in rendered(p) if m["metadata"]["name"] == manifests.CODE_CONFIG_MAP]
    assert base64.b64decode(code["binaryData"][manifests.WHEEL_KEY]) == WHEEL.content
    digest = hashlib.sha256(WHEEL.content).hexdigest()
    assert (
        code["data"][contract.PROJECT_REQUIREMENTS]
        == f"./{WHEEL.filename} --hash=sha256:{digest}\n"
    )
    assert code["data"][contract.LOCK_REQUIREMENTS] == LOCK
    for role, pod in (("master", _pods(p)["locust-master"]), ("worker", _pods(p)["locust-worker"])):
        install, check = pod["spec"]["initContainers"]
        assert install["command"] == manifests.install_command()
        assert install["workingDir"] == contract.BOOTSTRAP_DIR
        assert "--require-hashes" in install["command"] and "--no-deps" in install["command"]
        assert check["command"] == [*contract.ENTRYPOINT, "check", role]
        (main,) = pod["spec"]["containers"]
        assert main["command"] == [*contract.ENTRYPOINT, role]
        assert main["image"] == install["image"] == versions.POD_PYTHON_IMAGE
        assert {"name": "PYTHONPATH", "value": contract.SITE_DIR} in main["env"]


def test_the_image_path_runs_the_pinned_image_with_no_init_container() -> None:
    for pod in _pods(image_run()).values():
        assert "initContainers" not in pod["spec"]
        (main,) = pod["spec"]["containers"]
        assert main["image"] == spec().code.image  # type: ignore[union-attr]
        assert main["command"][:3] == list(contract.ENTRYPOINT)
    assert not [m for m in rendered(image_run()) if m["metadata"]["name"] == "pod-code"]


# ------------------------------------------------------------------------------------------------
# Who can reach whom: the NetworkPolicies evaluated as Kubernetes defines them (a pod selected
# by any policy of a direction is isolated in it; then the union of their rules applies).


@dataclass(frozen=True, eq=False)
class Endpoint:
    namespace: str | None
    labels: dict[str, str]
    ip: str = "10.0.5.5"


NS_LABELS = {
    f"loadtest-{RUN_ID}": {topology.ROLE_LABEL: topology.LOADTEST_ROLE},
    "vllm": {},
    "kube-system": {},
    "monitoring": {},
    "default": {},
}


def _matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    wanted = (selector or {}).get("matchLabels", {})
    return all(labels.get(k) == v for k, v in wanted.items())


def _peer(peer: dict[str, Any], policy_ns: str, other: Endpoint) -> bool:
    if "ipBlock" in peer:
        if other.namespace is not None:
            return False  # pod traffic is matched by selectors in this model
        ip = ipaddress.ip_address(other.ip)
        block = peer["ipBlock"]
        return ip in ipaddress.ip_network(block["cidr"]) and not any(
            ip in ipaddress.ip_network(e) for e in block.get("except", [])
        )
    if other.namespace is None:
        return False
    if "namespaceSelector" in peer:
        ns_labels = {**NS_LABELS[other.namespace], "kubernetes.io/metadata.name": other.namespace}
        if not _matches(peer["namespaceSelector"], ns_labels):
            return False
    elif other.namespace != policy_ns:
        return False
    return "podSelector" not in peer or _matches(peer["podSelector"], other.labels)


def _allowed(
    policies: list[dict[str, Any]], me: Endpoint, other: Endpoint, port: int, way: str
) -> bool:
    field, peers = ("egress", "to") if way == "Egress" else ("ingress", "from")
    mine = [
        pol
        for pol in policies
        if pol["metadata"]["namespace"] == me.namespace
        and _matches(pol["spec"]["podSelector"], me.labels)
        and way in pol["spec"]["policyTypes"]
    ]
    if not mine:
        return True
    for pol in mine:
        for rule in pol["spec"].get(field, []):
            port_ok = any(p["port"] == port for p in rule.get("ports", [])) or not rule.get("ports")
            if port_ok and any(_peer(pe, me.namespace or "", other) for pe in rule[peers]):
                return True
    return False


def _reaches(policies: list[dict[str, Any]], src: Endpoint, dst: Endpoint, port: int) -> bool:
    return _allowed(policies, src, dst, port, "Egress") and _allowed(
        policies, dst, src, port, "Ingress"
    )


NS = f"loadtest-{RUN_ID}"
WORKER = Endpoint(NS, manifests.labels(RUN_ID, "worker"))
MASTER = Endpoint(NS, manifests.labels(RUN_ID, "master"))
VLLM = Endpoint("vllm", {"app.kubernetes.io/name": "vllm"})
DNS = Endpoint("kube-system", {"k8s-app": "kube-dns"})
PROMETHEUS = Endpoint("monitoring", {"app.kubernetes.io/name": "prometheus"})
STRANGER = Endpoint("default", {"app": "anything"})
PUBLIC = Endpoint(None, {}, "151.101.0.223")
VPC_HOST = Endpoint(None, {}, "10.0.12.7")
IMDS = Endpoint(None, {}, "169.254.169.254")


def test_network_policies_let_each_pod_reach_only_what_it_needs() -> None:
    policies = list(_objects(image_run(), "NetworkPolicy").values())
    allowed = {
        (WORKER, VLLM, 8000),
        (WORKER, DNS, 53),
        (WORKER, MASTER, contract.LOCUST_PORT),
        (MASTER, VLLM, 8000),
        (MASTER, DNS, 53),
        (MASTER, PROMETHEUS, 9090),
    }
    endpoints = [WORKER, MASTER, VLLM, DNS, PROMETHEUS, STRANGER, PUBLIC, VPC_HOST, IMDS]
    ports = [53, 80, 443, 8000, 9090, contract.LOCUST_PORT, contract.MASTER_API_PORT]
    for src in (WORKER, MASTER):
        for dst in endpoints:
            for port in ports:
                if dst is src:
                    continue
                expect = (src, dst, port) in allowed
                assert _reaches(policies, src, dst, port) is expect, (src, dst, port)
    for src in (STRANGER, VLLM, PROMETHEUS):  # ingress to the master: only from the workers
        for port in (contract.LOCUST_PORT, contract.MASTER_API_PORT):
            assert not _allowed(policies, MASTER, src, port, "Ingress")


def test_the_wheel_path_adds_only_the_public_package_index_on_443() -> None:
    policies = list(_objects(wheel_run(), "NetworkPolicy").values())
    for src in (WORKER, MASTER):
        assert _reaches(policies, src, PUBLIC, 443)
        assert not _reaches(policies, src, PUBLIC, 80)
        assert not _reaches(policies, src, VPC_HOST, 443)
        assert not _reaches(policies, src, IMDS, 443)
    assert not _reaches(policies, WORKER, PROMETHEUS, 9090)


def test_worker_egress_names_the_master_service_selector_exactly() -> None:
    """The VPC CNI allows a ClusterIP only for a rule whose selector matches the Service's."""
    p = image_run()
    service = _objects(p, "Service")[contract.MASTER_SERVICE]["spec"]["selector"]
    worker_policy = _objects(p, "NetworkPolicy")["locust-worker"]["spec"]["egress"]
    to_master = [rule["to"][0] for rule in worker_policy if rule["ports"][0]["port"] == 5557]
    assert to_master == [{"podSelector": {"matchLabels": service}}]
    # ...and drops it when the selected label is also on the source pod.
    worker_labels = _pods(p)["locust-worker"]["metadata"]["labels"]
    assert not set(service.items()) <= set(worker_labels.items())
    assert set(service.items()) <= set(_pods(p)["locust-master"]["metadata"]["labels"].items())


# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkov_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One checkov run over the image and wheel renders (checkov takes seconds to start)."""
    root = tmp_path_factory.mktemp("checkov-loadtest")
    for name, run in (("image", image_run), ("wheel", wheel_run)):
        write_manifests([m for m in rendered(run()) if is_core(m)], root / name)
    done = subprocess.run(
        [checkov_binary(), "-d", str(root), "--framework", "kubernetes", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    report = json.loads(done.stdout)
    result: dict[str, Any] = report[0] if isinstance(report, list) else report
    return result


def test_checkov_finds_nothing_that_is_not_skipped_with_a_reason(
    checkov_report: dict[str, Any],
) -> None:
    results = checkov_report["results"]
    failed = [(c["check_id"], c["resource"]) for c in results["failed_checks"]]
    assert failed == []
    assert checkov_report["summary"]["parsing_errors"] == 0
    skipped = {c["check_id"] for c in results["skipped_checks"]}
    assert skipped == set(manifests.CHECKOV_SKIPS)
    for check in results["skipped_checks"]:
        assert (
            check["check_result"]["suppress_comment"] == manifests.CHECKOV_SKIPS[check["check_id"]]
        )
    assert checkov_report["summary"]["passed"] > 50
