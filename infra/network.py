"""The VPC the cluster runs in: public and private subnets per AZ, NAT, and an S3 endpoint.

Nodes live in private subnets and reach the internet through NAT. Traffic to S3 (ECR image
layers, which the EKS add-on images come from, and weights or logs kept in S3) takes the free
gateway endpoint instead. The vLLM image (Docker Hub) and Hugging Face weights still cross the
NAT gateway and its per-GB charge: some 15-30 GB for each GPU node that starts cold.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import pulumi
import pulumi_aws as aws

from domain.stack_config import NetworkConfig

# EKS cannot place control-plane network interfaces in these zones (EKS user guide, "Amazon EKS
# networking requirements"); a region's first zones are used otherwise.
EKS_UNSUPPORTED_ZONE_IDS = ("use1-az3", "usw1-az2", "cac1-az3")


def usable_zones(
    available: Sequence[str], offerings: Sequence[tuple[str, str]], instance_types: Sequence[str]
) -> list[str]:
    """The zones, in the region's order, where every one of the node instance types is offered.

    ``offerings`` are ``(instance type, zone)`` pairs as EC2 lists them. A node group spans all
    its subnets, and GPU types are missing from some zones (g5 and g6 in parts of us-east-1):
    a subnet there would leave the Auto Scaling group failing launches in it.
    """
    offered = {t: {zone for kind, zone in offerings if kind == t} for t in instance_types}
    return [z for z in available if all(z in zones for zones in offered.values())]


def subnet_layout(vpc_cidr: str, az_count: int) -> list[tuple[str, str]]:
    """``(public, private)`` CIDRs per AZ.

    Each private subnet is an eighth of the VPC, because the VPC CNI gives every pod a VPC
    address; the public subnets, which hold only NAT gateways and load balancers, share the
    last eighth. Up to four AZs fit without overlap.
    """
    eighths = list(ipaddress.IPv4Network(vpc_cidr).subnets(prefixlen_diff=3))
    publics = list(eighths[-1].subnets(prefixlen_diff=2))
    return [(str(publics[i]), str(eighths[i])) for i in range(az_count)]


class Network(pulumi.ComponentResource):
    """VPC, subnets with the EKS load-balancer role tags, IGW, NAT, routes, S3 endpoint."""

    vpc_id: pulumi.Output[str]
    public_subnet_ids: list[pulumi.Output[str]]
    private_subnet_ids: list[pulumi.Output[str]]

    def __init__(
        self,
        name: str,
        cfg: NetworkConfig,
        cluster_name: str,
        region: str,
        *,
        instance_types: Sequence[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("qwen-stress:infra:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        available = aws.get_availability_zones(
            state="available",
            exclude_zone_ids=list(EKS_UNSUPPORTED_ZONE_IDS),
            filters=[{"name": "opt-in-status", "values": ["opt-in-not-required"]}],
            opts=pulumi.InvokeOptions(parent=self),
        ).names
        if len(available) < cfg.az_count:
            raise pulumi.RunError(
                f"qwen-stress:network.azCount is {cfg.az_count}, but {region} has only "
                f"{len(available)} availability zones EKS can use; lower network.azCount"
            )
        offerings = aws.ec2.get_instance_type_offerings(
            location_type="availability-zone",
            filters=[{"name": "instance-type", "values": sorted(set(instance_types))}],
            opts=pulumi.InvokeOptions(parent=self),
        )
        zones = usable_zones(
            available,
            list(zip(offerings.instance_types, offerings.locations, strict=True)),
            instance_types,
        )
        if len(zones) < cfg.az_count:
            raise pulumi.RunError(
                f"qwen-stress:network.azCount is {cfg.az_count}, but only {len(zones)} of the "
                f"zones EKS can use in {region} offer {' and '.join(sorted(set(instance_types)))} "
                f"({', '.join(zones) or 'none'}); lower network.azCount or choose another "
                "gpu.instanceType"
            )
        cluster_tag = {f"kubernetes.io/cluster/{cluster_name}": "shared"}

        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=cfg.cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={"Name": f"{cluster_name}-vpc"},
            opts=child,
        )
        # Adopting the default security group with no rules closes it: nothing in this VPC
        # should ever fall back to it.
        aws.ec2.DefaultSecurityGroup(f"{name}-default-sg", vpc_id=vpc.id, opts=child)
        igw = aws.ec2.InternetGateway(
            f"{name}-igw", vpc_id=vpc.id, tags={"Name": f"{cluster_name}-igw"}, opts=child
        )
        public_rt = aws.ec2.RouteTable(
            f"{name}-public-rt", vpc_id=vpc.id, tags={"Name": f"{cluster_name}-public"}, opts=child
        )
        aws.ec2.Route(
            f"{name}-public-default",
            route_table_id=public_rt.id,
            destination_cidr_block="0.0.0.0/0",
            gateway_id=igw.id,
            opts=child,
        )

        def subnet(kind: str, cidr: str, az: str, lb_role: str) -> aws.ec2.Subnet:
            # The role tag tells the load-balancer controller which subnets take which kind of
            # load balancer; the cluster tag that this cluster may use them.
            return aws.ec2.Subnet(
                f"{name}-{kind}-{az}",
                vpc_id=vpc.id,
                cidr_block=cidr,
                availability_zone=az,
                tags={"Name": f"{cluster_name}-{kind}-{az}", lb_role: "1", **cluster_tag},
                opts=child,
            )

        public_ids: list[pulumi.Output[str]] = []
        private_ids: list[pulumi.Output[str]] = []
        private_rts: list[aws.ec2.RouteTable] = []
        nats: list[aws.ec2.NatGateway] = []
        nat_count = cfg.nat_gateway_count
        for i, (public_cidr, private_cidr) in enumerate(subnet_layout(cfg.cidr, cfg.az_count)):
            az = zones[i]
            public = subnet("public", public_cidr, az, "kubernetes.io/role/elb")
            aws.ec2.RouteTableAssociation(
                f"{name}-public-{az}", subnet_id=public.id, route_table_id=public_rt.id, opts=child
            )
            private = subnet("private", private_cidr, az, "kubernetes.io/role/internal-elb")
            if i < nat_count:
                eip = aws.ec2.Eip(
                    f"{name}-nat-{az}",
                    domain="vpc",
                    tags={"Name": f"{cluster_name}-nat-{az}"},
                    opts=child,
                )
                nats.append(
                    aws.ec2.NatGateway(
                        f"{name}-nat-{az}",
                        allocation_id=eip.id,
                        subnet_id=public.id,
                        tags={"Name": f"{cluster_name}-nat-{az}"},
                        opts=pulumi.ResourceOptions(parent=self, depends_on=[igw]),
                    )
                )
            # One route table per AZ even with a single NAT, so switching to perAz only
            # changes routes.
            private_rt = aws.ec2.RouteTable(
                f"{name}-private-{az}",
                vpc_id=vpc.id,
                tags={"Name": f"{cluster_name}-private-{az}"},
                opts=child,
            )
            aws.ec2.Route(
                f"{name}-private-{az}-default",
                route_table_id=private_rt.id,
                destination_cidr_block="0.0.0.0/0",
                nat_gateway_id=nats[min(i, nat_count - 1)].id,
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-private-{az}",
                subnet_id=private.id,
                route_table_id=private_rt.id,
                opts=child,
            )
            public_ids.append(public.id)
            private_ids.append(private.id)
            private_rts.append(private_rt)

        aws.ec2.VpcEndpoint(
            f"{name}-s3",
            vpc_id=vpc.id,
            service_name=f"com.amazonaws.{region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=[rt.id for rt in private_rts],
            tags={"Name": f"{cluster_name}-s3"},
            opts=child,
        )

        self.vpc_id = vpc.id
        self.public_subnet_ids = public_ids
        self.private_subnet_ids = private_ids
        self.register_outputs(
            {
                "vpcId": self.vpc_id,
                "publicSubnetIds": public_ids,
                "privateSubnetIds": private_ids,
            }
        )
