"""Who may reach an EC2 instance of a run: its key pair and its security group.

Each run gets a key pair named after it (the private half generated here and kept 0600,
`remote.providers.keys`; a cloud key whose private half was lost is replaced) and a
security group that admits SSH from the operator's address only. Both carry the console's
tags. The group is removed after the run's last instance, best effort.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from remote.errors import ProviderError
from remote.providers import keys
from remote.providers.aws_client import AwsTarget, call
from remote.providers.base import MANAGED_BY_TAG, MANAGED_BY_VALUE, RUN_ID_TAG


class Ec2Access:
    """The key pair and security group of a run, for `remote.providers.ec2.Ec2SpotProvider`."""

    target: AwsTarget
    key_dir: Path

    @property
    def _ec2(self) -> Any:
        raise NotImplementedError

    def _ensure_key_pair(self, run_id: str) -> str:
        key_name = f"rc-{run_id}"
        files, created = keys.load_or_create(self.key_dir, key_name)
        exists = True
        try:
            call(self.target, "DescribeKeyPairs", self._ec2.describe_key_pairs, KeyNames=[key_name])
        except ProviderError as exc:
            if exc.code != "InvalidKeyPair.NotFound":
                raise
            exists = False
        if exists and created:
            # The cloud holds a public key whose private half we lost: replace it.
            call(self.target, "DeleteKeyPair", self._ec2.delete_key_pair, KeyName=key_name)
            exists = False
        if not exists:
            call(
                self.target,
                "ImportKeyPair",
                self._ec2.import_key_pair,
                KeyName=key_name,
                PublicKeyMaterial=files.public_line.encode("ascii"),
                TagSpecifications=[
                    {
                        "ResourceType": "key-pair",
                        "Tags": ec2_tags({MANAGED_BY_TAG: MANAGED_BY_VALUE, RUN_ID_TAG: run_id}),
                    }
                ],
            )
        return key_name

    def _ensure_security_group(self, run_id: str, ssh_cidr: str) -> str:
        name = f"rc-ssh-{run_id}"
        vpcs = call(
            self.target, "DescribeVpcs", self._ec2.describe_vpcs, Filters=[{"Name": "is-default", "Values": ["true"]}]
        ).get("Vpcs", [])
        if not vpcs:
            raise ProviderError(
                f"no default VPC in {self.target.region}; create one with `aws ec2 create-default-vpc`",
                code="NoDefaultVpc",
            )
        vpc_id = vpcs[0]["VpcId"]
        groups = call(
            self.target,
            "DescribeSecurityGroups",
            self._ec2.describe_security_groups,
            Filters=[{"Name": "group-name", "Values": [name]}, {"Name": "vpc-id", "Values": [vpc_id]}],
        ).get("SecurityGroups", [])
        if groups:
            group = groups[0]
            group_id = group["GroupId"]
            admitted = {
                r.get("CidrIp")
                for p in group.get("IpPermissions", [])
                if p.get("FromPort") == 22
                for r in p.get("IpRanges", [])
            }
            if ssh_cidr in admitted:
                return group_id
        else:
            group_id = call(
                self.target,
                "CreateSecurityGroup",
                self._ec2.create_security_group,
                GroupName=name,
                VpcId=vpc_id,
                Description=f"retrain-console run {run_id}: SSH from the operator only",
                TagSpecifications=[
                    {
                        "ResourceType": "security-group",
                        "Tags": ec2_tags({MANAGED_BY_TAG: MANAGED_BY_VALUE, RUN_ID_TAG: run_id}),
                    }
                ],
            )["GroupId"]
        call(
            self.target,
            "AuthorizeSecurityGroupIngress",
            self._ec2.authorize_security_group_ingress,
            GroupId=group_id,
            IpPermissions=[
                {
                    "IpProtocol": "tcp",
                    "FromPort": 22,
                    "ToPort": 22,
                    "IpRanges": [{"CidrIp": ssh_cidr, "Description": "operator"}],
                }
            ],
        )
        return group_id

    def _delete_security_group_quietly(self, run_id: str) -> None:
        # Best effort: AWS may refuse for a while after termination (DependencyViolation);
        # a leftover group costs nothing and the next terminate of the run retries.
        try:
            groups = call(
                self.target,
                "DescribeSecurityGroups",
                self._ec2.describe_security_groups,
                Filters=[{"Name": "group-name", "Values": [f"rc-ssh-{run_id}"]}],
            )
            for group in groups.get("SecurityGroups", []):
                call(self.target, "DeleteSecurityGroup", self._ec2.delete_security_group, GroupId=group["GroupId"])
        except ProviderError:
            pass


def ec2_tags(values: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in values.items()]
