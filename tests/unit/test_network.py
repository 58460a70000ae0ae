"""The VPC: subnet layout, load-balancer role tags, NAT per config, S3 endpoint."""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Mapping
from typing import Any

import pulumi
import pytest

from infra.network import subnet_layout, usable_zones
from tests import pulumi_mocks
from tests.pulumi_mocks import Program, run_program, stack_config

SUBNET = "aws:ec2/subnet:Subnet"
ROUTE = "aws:ec2/route:Route"


@pytest.mark.parametrize(("prefix", "azs"), list(itertools.product(range(16, 21), range(2, 5))))
def test_subnet_layout_fits_the_vpc_without_overlap(prefix: int, azs: int) -> None:
    vpc = ipaddress.IPv4Network(f"10.0.0.0/{prefix}")
    nets = [ipaddress.IPv4Network(c) for pair in subnet_layout(str(vpc), azs) for c in pair]
    assert len(nets) == 2 * azs
    assert all(n.subnet_of(vpc) for n in nets)
    assert not any(a.overlaps(b) for a, b in itertools.combinations(nets, 2))
    public, private = (ipaddress.IPv4Network(c) for c in subnet_layout(str(vpc), azs)[0])
    assert private.num_addresses == 4 * public.num_addresses  # pods take private addresses


def _subnets(program: Program, kind: str) -> list[dict[str, Any]]:
    return [r.inputs for r in program.of_type(SUBNET) if f"-{kind}-" in r.name]


def test_subnets_carry_load_balancer_role_and_cluster_tags(dev: Program) -> None:
    cluster_tag = "kubernetes.io/cluster/qwen-dev-dev"
    public, private = _subnets(dev, "public"), _subnets(dev, "private")
    assert len(public) == len(private) == 2  # network.azCount in Pulumi.dev.yaml
    assert {s["availabilityZone"] for s in private} == {"us-east-1a", "us-east-1b"}
    for subnet in public:
        tags = subnet["tags"]
        assert tags["kubernetes.io/role/elb"] == "1" and tags[cluster_tag] == "shared"
        assert not subnet.get("mapPublicIpOnLaunch")
    for subnet in private:
        tags = subnet["tags"]
        assert tags["kubernetes.io/role/internal-elb"] == "1" and tags[cluster_tag] == "shared"


def test_single_nat_serves_every_private_route(dev: Program) -> None:
    assert len(dev.of_type("aws:ec2/natGateway:NatGateway")) == 1
    private_routes = [r for r in dev.of_type(ROUTE) if "-private-" in r.name]
    assert len(private_routes) == 2
    assert {r.inputs["natGatewayId"] for r in private_routes} == {"network-nat-us-east-1a-id"}


def test_nat_per_az_gives_each_private_route_its_own(a10g: Program) -> None:
    nats = a10g.of_type("aws:ec2/natGateway:NatGateway")
    assert len(nats) == 3
    private_routes = [r for r in a10g.of_type(ROUTE) if "-private-" in r.name]
    assert len({r.inputs["natGatewayId"] for r in private_routes}) == 3
    public = {f"{r.name}-id" for r in a10g.of_type(SUBNET) if "-public-" in r.name}
    assert {n.inputs["subnetId"] for n in nats} == public


def test_s3_gateway_endpoint_on_private_route_tables(dev: Program) -> None:
    endpoint = dev.one("aws:ec2/vpcEndpoint:VpcEndpoint").inputs
    assert endpoint["vpcEndpointType"] == "Gateway"
    assert endpoint["serviceName"] == "com.amazonaws.us-east-1.s3"
    private_tables = {
        f"{r.name}-id" for r in dev.of_type("aws:ec2/routeTable:RouteTable") if "private" in r.name
    }
    assert set(endpoint["routeTableIds"]) == private_tables


def test_nodes_and_control_plane_use_private_subnets_only(dev: Program) -> None:
    private = {f"{r.name}-id" for r in dev.of_type(SUBNET) if "-private-" in r.name}
    assert set(dev.one("aws:eks/cluster:Cluster").inputs["vpcConfig"]["subnetIds"]) == private
    for group in dev.of_type("aws:eks/nodeGroup:NodeGroup"):
        assert set(group.inputs["subnetIds"]) == private


def test_region_with_too_few_zones_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        pulumi_mocks.CALL_RESULTS,
        "aws:index/getAvailabilityZones:getAvailabilityZones",
        lambda _args: {"names": ["us-east-1a", "us-east-1b"], "zoneIds": ["a", "b"]},
    )
    network = dict(stack_config("a10g")["qwen-stress:network"])  # asks for 3 AZs
    with pytest.raises(pulumi.RunError, match=r"network\.azCount is 3, but us-east-1 has only 2"):
        run_program("dev", overrides={"qwen-stress:network": network})


def _offered_except(gpu_missing_in: set[str]) -> pulumi_mocks.CallResult:
    def answer(args: Mapping[str, Any]) -> dict[str, Any]:
        result = pulumi_mocks.offerings(args, ["us-east-1a", "us-east-1b", "us-east-1c"])
        rows = [
            (t, z)
            for t, z in zip(result["instanceTypes"], result["locations"], strict=True)
            if not (t.startswith("g") and z in gpu_missing_in)
        ]
        return {**result, "instanceTypes": [t for t, _ in rows], "locations": [z for _, z in rows]}

    return answer


def test_subnets_skip_zones_without_the_gpu_instance_type(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(
        pulumi_mocks.CALL_RESULTS,
        "aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings",
        _offered_except({"us-east-1a"}),
    )
    program = run_program("dev")
    zones = {s["availabilityZone"] for s in _subnets(program, "private")}
    assert zones == {"us-east-1b", "us-east-1c"}


def test_too_few_zones_with_the_gpu_instance_type_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(
        pulumi_mocks.CALL_RESULTS,
        "aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings",
        _offered_except({"us-east-1a", "us-east-1b"}),
    )
    with pytest.raises(pulumi.RunError) as caught:
        run_program("dev")
    message = str(caught.value)
    assert "qwen-stress:network.azCount is 2, but only 1" in message
    assert "c6i.2xlarge and g4dn.xlarge (us-east-1c)" in message
    assert "gpu.instanceType" in message


def test_usable_zones_need_every_node_type_and_keep_the_region_order() -> None:
    offerings = [("g5.xlarge", "b"), ("g5.xlarge", "d"), ("m5.large", "d"), ("m5.large", "b")]
    offerings.append(("m5.large", "a"))
    assert usable_zones(["a", "b", "c", "d"], offerings, ["g5.xlarge", "m5.large"]) == ["b", "d"]
