"""Test fixtures the Rust SDK crates of the suite cannot make: staging's network.

A DB subnet group (or an awsvpc ECS task) needs real subnets, and subnets live in EC2,
whose SDK crate is large to compile for this one need. `POST /understudy/seed/network {"account",
"region", "subnet_group"}` creates a VPC with two subnets, a security group and
the DB subnet group in that account, and answers `{"vpc_id", "subnet_ids",
"security_group_id", "subnet_group"}`.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable

from werkzeug.wrappers import Request, Response


def seed_network(account_id: str, region: str, subnet_group: str) -> dict[str, Any]:
    from moto.ec2.models import ec2_backends
    from moto.rds.models import rds_backends

    ec2 = ec2_backends[account_id][region]
    vpc = ec2.create_vpc("10.20.0.0/16")
    # DNS hostnames on, as staging VPCs that run ECS tasks have them (moto then gives
    # a task's network interface the private DNS name an awsvpc task reports).
    ec2.modify_vpc_attribute(vpc.id, "enable_dns_hostnames", True)
    subnets = [
        ec2.create_subnet(vpc.id, f"10.20.{n}.0/24", availability_zone=f"{region}{zone}")
        for n, zone in ((1, "a"), (2, "b"))
    ]
    group = ec2.create_security_group(f"{subnet_group}-db", "staging databases", vpc_id=vpc.id)
    rds_backends[account_id][region].create_subnet_group(subnet_group, "staging databases", subnets, [])
    return {
        "vpc_id": vpc.id,
        "subnet_ids": [s.id for s in subnets],
        "security_group_id": group.id,
        "subnet_group": subnet_group,
    }


def network_app(default_region: str) -> Callable:
    def app(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        request = Request(environ)
        body = request.get_json(force=True, silent=True) or {}
        if request.method != "POST" or not isinstance(body.get("subnet_group"), str):
            answer, status = {"message": 'POST {"account", "region", "subnet_group"}'}, 400
        else:
            answer = seed_network(
                str(body.get("account") or "123456789012"),
                str(body.get("region") or default_region),
                body["subnet_group"],
            )
            status = 200
        return Response(json.dumps(answer), status, content_type="application/json")(environ, start_response)

    return app
