"""From an empty account on the moto server: with only create_cluster given, provision makes the
network (VPC, a public and a private subnet per zone offering the instance type, internet and
NAT gateways, route tables) and the cluster and node IAM roles; a second run adopts them; the
teardown with delete_cluster leaves nothing of ours in moto's own listings, and another team's
VPC and roles untouched. Given subnets and roles that cannot work are refused by preflight,
naming each problem, before anything is created."""

from __future__ import annotations

from llm_on_eks.naming import CLUSTER_KEY, MANAGED_BY_KEY
from tests.aws.conftest import CREATE, ROLE, client, foreign_network
from tests.aws.test_preflight import CREATES
from tests.aws.test_provision import PLANS, inventory, load
from tests.dag_runs import load_dag, run_dag

OURS = [{"Name": f"tag:{MANAGED_BY_KEY}", "Values": ["llm-on-eks"]}]
CLUSTER_ROLE, NODE_ROLE = "llm-on-eks-llm-inference-us-west-2-cluster", "llm-on-eks-llm-inference-us-west-2-node"


def holdings(moto_url: str, region: str) -> dict:
    """Everything billable or named in the account, as moto lists it (not as our code finds it)."""
    ec2, iam = client(moto_url, "ec2", region), client(moto_url, "iam", region)
    return {
        **inventory(moto_url, region),
        "vpcs": sorted(v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"] if not v["IsDefault"]),
        "subnets": sorted(s["SubnetId"] for s in ec2.describe_subnets()["Subnets"] if not s["DefaultForAz"]),
        "internet_gateways": len(ec2.describe_internet_gateways(Filters=OURS)["InternetGateways"]),
        "nat_gateways": len([n for n in ec2.describe_nat_gateways()["NatGateways"] if n["State"] != "deleted"]),
        "addresses": len(ec2.describe_addresses()["Addresses"]),
        "route_tables": len(ec2.describe_route_tables(Filters=OURS)["RouteTables"]),
        "roles": sorted(r["RoleName"] for r in iam.list_roles()["Roles"]),
    }


def test_an_empty_account_gets_a_network_and_roles_that_go_with_the_cluster(aws_env, gaps):
    conf = {**PLANS["gpu"], **CREATE}
    region = conf["region"]
    foreign_subnets = foreign_network(aws_env, region)
    before = holdings(aws_env, region)

    first = run_dag(load("aws_provision"), conf)
    assert first.failed() == [], first.states
    made = first.xcoms["provision.ensure_network"]
    assert made["action"] == "created" and made["zones"] == ["us-west-2a", "us-west-2b", "us-west-2c"]
    roles = first.xcoms["provision.ensure_roles"]
    assert {kind: role["action"] for kind, role in roles.items()} == {"cluster": "created", "node": "created"}

    eks, ec2, iam = (client(aws_env, s, region) for s in ("eks", "ec2", "iam"))
    cluster = eks.describe_cluster(name="llm-inference")["cluster"]
    assert cluster["roleArn"] == roles["cluster"]["arn"]
    assert cluster["resourcesVpcConfig"]["subnetIds"] == made["private_subnet_ids"] + made["public_subnet_ids"]
    for name in eks.list_nodegroups(clusterName="llm-inference")["nodegroups"]:
        group = eks.describe_nodegroup(clusterName="llm-inference", nodegroupName=name)["nodegroup"]
        assert group["nodeRole"] == roles["node"]["arn"] and set(group["subnets"]) <= set(made["private_subnet_ids"])
    fs = client(aws_env, "fsx", region).describe_file_systems()["FileSystems"][0]
    assert fs["SubnetIds"] == made["private_subnet_ids"][:1]
    attached = {p["PolicyName"] for p in iam.list_attached_role_policies(RoleName=NODE_ROLE)["AttachedPolicies"]}
    assert attached == {"AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryReadOnly"}
    # The nodes may use the artifact bucket (staging and compile Jobs write, serving pods read), and no other.
    bucket = f"llm-on-eks-llm-inference-{region}"
    (inline,) = iam.list_role_policies(RoleName=NODE_ROLE)["PolicyNames"]
    granted = iam.get_role_policy(RoleName=NODE_ROLE, PolicyName=inline)["PolicyDocument"]["Statement"]
    assert {s["Resource"] for s in granted} == {f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"}
    public = ec2.describe_route_tables(Filters=[*OURS, {"Name": "tag:Name", "Values": ["llm-inference-public"]}])
    assert {r.get("GatewayId", "")[:4] for r in public["RouteTables"][0]["Routes"]} == {"loca", "igw-"}
    private = ec2.describe_route_tables(Filters=[*OURS, {"Name": "tag:Name", "Values": ["llm-inference-private"]}])
    assert any(r.get("NatGatewayId") == made["nat_gateway_id"] for r in private["RouteTables"][0]["Routes"])
    vpc = ec2.describe_vpcs(Filters=[*OURS, {"Name": f"tag:{CLUSTER_KEY}", "Values": ["llm-inference"]}])["Vpcs"]
    assert len(vpc) == 1

    again = run_dag(load("aws_provision"), conf)
    assert again.failed() == [], again.states
    assert again.xcoms["provision.ensure_network"]["action"] == "the cluster's own"
    assert {k: r["action"] for k, r in again.xcoms["provision.ensure_roles"].items()} == dict.fromkeys(
        ("cluster", "node"), "adopted")

    down = run_dag(load("aws_teardown"), {**conf, "delete_cluster": True, "delete_fsx": True, "delete_artifacts": True})
    assert down.failed() == [], down.states
    assert down.xcoms["teardown_aws.delete_network"]["action"] == "deleted"
    assert {k: r["action"] for k, r in down.xcoms["teardown_aws.delete_roles"].items()} == dict.fromkeys(
        ("cluster", "node"), "deleted")
    # Nothing of ours is left; the other team's VPC, subnets and roles are as they were.
    assert holdings(aws_env, region) == before
    assert set(foreign_subnets) <= set(before["subnets"]) and ROLE.rsplit("/", 1)[1] in before["roles"]


def test_preflight_refuses_given_subnets_and_roles_that_cannot_work(aws_env, gaps, capfd):
    """p5.48xlarge is offered in ap-northeast-1a and 1c, not 1d (moto's offering data, as AWS's);
    two /28 subnets hold 22 free addresses, a p5 node takes 100 (two interfaces of 50); the
    cluster role given trusts EC2, not EKS, and has no policy attached."""
    region = "ap-northeast-1"
    ec2, iam = client(aws_env, "ec2", region), client(aws_env, "iam", region)
    vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.1.{i}.0/28", AvailabilityZone=f"{region}{zone}")
               ["Subnet"]["SubnetId"] for i, zone in enumerate("cd")]
    iam.create_role(RoleName="not-for-eks", AssumeRolePolicyDocument='{"Version": "2012-10-17", "Statement": [{'
                    '"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}')
    role = "arn:aws:iam::123456789012:role/not-for-eks"

    deploy = load_dag("dags/deploy_llama4.py", "deploy_llama4")
    result = run_dag(deploy, {"region": region, **CREATE, "subnet_ids": subnets, "cluster_role_arn": role})
    assert result.states["provision.preflight"] == "failed"
    assert result.states["provision.ensure_network"] == "upstream_failed"
    out = capfd.readouterr().out
    assert (f"{subnets[1]} (ap-northeast-1d) is in a zone without p5.48xlarge; zones that offer it: "
            "ap-northeast-1a, ap-northeast-1c") in out
    assert "the subnets have 11 free addresses, the node group needs 100" in out
    assert f"cluster_role_arn {role}: its trust policy does not let eks.amazonaws.com assume it" in out
    assert f"cluster_role_arn {role}: attach the AWS managed policies AmazonEKSClusterPolicy" in out
    assert {op: gaps.calls[op] for op in CREATES} == dict.fromkeys(CREATES, 0)
    assert [r["RoleName"] for r in iam.list_roles()["Roles"]] == ["not-for-eks"]


def test_preflight_refuses_an_existing_cluster_whose_subnets_cannot_take_the_node_group(aws_env, gaps, capfd):
    """With no subnet_ids, the node group goes into the adopted cluster's subnets: here both in
    ap-northeast-1d, which has no p5.48xlarge."""
    region = "ap-northeast-1"
    ec2 = client(aws_env, "ec2", region)
    vpc = ec2.create_vpc(CidrBlock="10.2.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.2.{i}.0/24", AvailabilityZone=f"{region}d")
               ["Subnet"]["SubnetId"] for i in range(2)]
    client(aws_env, "eks", region).create_cluster(name="team-cluster", version="1.33", roleArn=ROLE,
                                                  resourcesVpcConfig={"subnetIds": subnets})
    deploy = load_dag("dags/deploy_llama4.py", "deploy_llama4")
    result = run_dag(deploy, {"region": region, "cluster_name": "team-cluster"})
    assert result.states["provision.preflight"] == "failed"
    assert ("none of cluster team-cluster's subnets is in a zone offering p5.48xlarge (ap-northeast-1a, "
            "ap-northeast-1c would work): name subnet_ids there") in capfd.readouterr().out
    assert {op: gaps.calls[op] for op in CREATES} == {**dict.fromkeys(CREATES, 0), "eks.CreateCluster": 1}  # the test's

