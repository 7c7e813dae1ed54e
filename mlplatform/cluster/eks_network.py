"""The VPC an EKS cluster lives in: public and private subnets per zone, one NAT gateway.

Pure helpers (``subnet_plan``, ``subnet_tags``) decide CIDRs and the tags load balancers look
for; ``Vpc`` only turns them into resources, so tests check the plan without AWS.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

__all__ = ["SubnetPlan", "Vpc", "VpcArgs", "cluster_tag", "subnet_plan", "subnet_tags"]

# Load balancer controllers (in-tree cloud provider and the AWS Load Balancer Controller) pick
# subnets by these tags: public subnets for internet-facing LBs, private ones for internal LBs.
ELB_ROLE_TAG = "kubernetes.io/role/elb"
INTERNAL_ELB_ROLE_TAG = "kubernetes.io/role/internal-elb"


def cluster_tag(cluster_name: str) -> str:
    """The tag that marks a subnet (or security group) as usable by ``cluster_name``."""
    return f"kubernetes.io/cluster/{cluster_name}"


@dataclass(frozen=True)
class SubnetPlan:
    zone: str
    private_cidr: str
    public_cidr: str


def subnet_plan(vpc_cidr: str, zones: Sequence[str]) -> list[SubnetPlan]:
    """One private and one public subnet per zone, without overlaps.

    The VPC is cut into 8 equal blocks: block i (i < 7) is zone i's private subnet (large, because
    the VPC CNI gives every pod a VPC address); block 7 is cut into 8 again for the public subnets,
    which only hold NAT gateways and load balancers. For a /16 that is /19 private, /22 public.
    """
    network = ipaddress.IPv4Network(vpc_cidr)
    blocks = list(network.subnets(prefixlen_diff=3))
    publics = list(blocks[-1].subnets(prefixlen_diff=3))
    if len(zones) > len(blocks) - 1:
        raise ValueError(f"at most {len(blocks) - 1} zones fit the subnet plan, got {len(zones)}")
    return [SubnetPlan(zone, str(blocks[i]), str(publics[i])) for i, zone in enumerate(zones)]


def subnet_tags(cluster_name: str, *, public: bool, name: str) -> dict[str, str]:
    role = ELB_ROLE_TAG if public else INTERNAL_ELB_ROLE_TAG
    return {"Name": name, cluster_tag(cluster_name): "shared", role: "1"}


@dataclass(frozen=True)
class VpcArgs:
    cidr: str
    zones: tuple[str, ...]  # availability zone names, at least two (EKS requires two)
    cluster_name: str  # subnets are tagged for this cluster's load balancers


class Vpc(pulumi.ComponentResource):
    """A VPC with a public and a private subnet in each zone and egress through one NAT gateway.

    Guarantees: private subnets have no route from the internet (egress via NAT only); public
    subnets route to an internet gateway; every subnet carries the cluster tag and its load
    balancer role tag. One NAT gateway (in the first zone) keeps the hourly cost down: losing that
    zone cuts egress for the others, an accepted trade-off for a platform that is not production.
    Anything placed in these subnets should depend on this component, so ``pulumi destroy``
    removes it before the gateways and subnets it needs.
    """

    def __init__(self, name: str, args: VpcArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlplatform:cluster:Vpc", name, None, opts)
        if len(args.zones) < 2:
            raise ValueError(f"EKS needs subnets in at least two availability zones, got {list(args.zones)}")
        child = pulumi.ResourceOptions(parent=self)
        plan = subnet_plan(args.cidr, args.zones)

        self.vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.cidr,
            # EKS private endpoint and EFS mount targets are reached by DNS name inside the VPC.
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={"Name": name},
            opts=child,
        )
        igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=self.vpc.id, tags={"Name": name}, opts=child)

        public_rt = aws.ec2.RouteTable(
            f"{name}-public",
            vpc_id=self.vpc.id,
            routes=[{"cidr_block": "0.0.0.0/0", "gateway_id": igw.id}],
            tags={"Name": f"{name}-public"},
            opts=child,
        )
        self.public_subnets = [
            self._subnet(f"{name}-public-{i}", p.public_cidr, p.zone, public_rt, args.cluster_name, public=True)
            for i, p in enumerate(plan)
        ]
        eip = aws.ec2.Eip(f"{name}-nat", domain="vpc", tags={"Name": f"{name}-nat"}, opts=child)
        nat = aws.ec2.NatGateway(
            f"{name}-nat",
            allocation_id=eip.id,
            subnet_id=self.public_subnets[0].id,
            tags={"Name": f"{name}-nat"},
            # The NAT gateway needs the internet gateway attached to be usable.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[igw]),
        )
        private_rt = aws.ec2.RouteTable(
            f"{name}-private",
            vpc_id=self.vpc.id,
            routes=[{"cidr_block": "0.0.0.0/0", "nat_gateway_id": nat.id}],
            tags={"Name": f"{name}-private"},
            opts=child,
        )
        self.private_subnets = [
            self._subnet(f"{name}-private-{i}", p.private_cidr, p.zone, private_rt, args.cluster_name, public=False)
            for i, p in enumerate(plan)
        ]

        self.vpc_id: pulumi.Output[str] = self.vpc.id
        self.private_subnet_ids: list[pulumi.Output[str]] = [s.id for s in self.private_subnets]
        self.public_subnet_ids: list[pulumi.Output[str]] = [s.id for s in self.public_subnets]
        self.register_outputs(
            {
                "vpc_id": self.vpc_id,
                "private_subnet_ids": self.private_subnet_ids,
                "public_subnet_ids": self.public_subnet_ids,
            }
        )

    def _subnet(
        self, name: str, cidr: str, zone: str, route_table: aws.ec2.RouteTable, cluster_name: str, *, public: bool
    ) -> aws.ec2.Subnet:
        subnet = aws.ec2.Subnet(
            name,
            vpc_id=self.vpc.id,
            cidr_block=cidr,
            availability_zone=zone,
            map_public_ip_on_launch=False,  # only the NAT gateway's Elastic IP is public
            tags=subnet_tags(cluster_name, public=public, name=f"{name}-{zone}"),
            opts=pulumi.ResourceOptions(parent=self),
        )
        aws.ec2.RouteTableAssociation(
            name, subnet_id=subnet.id, route_table_id=route_table.id, opts=pulumi.ResourceOptions(parent=self)
        )
        return subnet
