"""Simulator options: the documented defaults and every inferred behaviour as a switch.

Values only; nothing here does I/O. `cli.py` builds an `Options` from the command line.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

Role = Literal["admin", "user"]


@dataclass(frozen=True)
class User:
    name: str
    password: str
    role: Role


DEFAULT_USERS = "admin:admin:admin"


def parse_users(spec: str) -> tuple[User, ...]:
    """Parse `name:password:role,...`; the password may itself contain colons."""
    users: list[User] = []
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, rest = item.partition(":")
        password, sep2, role = rest.rpartition(":")
        if not sep or not sep2 or not name:
            raise ValueError(f"user {item!r} is not name:password:role")
        if role not in ("admin", "user"):
            raise ValueError(f"user {name!r} has role {role!r}; expected admin or user")
        users.append(User(name, password, "admin" if role == "admin" else "user"))
    return tuple(users)


@dataclass(frozen=True)
class Delays:
    start: float = 1.5
    join: float = 1.0
    failover: float = 3.0

    def replace(self, **changes: float) -> Delays:
        return dataclasses.replace(self, **changes)


PutOnInitialized = Literal["reject", "ignore"]
NodeGate = Literal["before-auth", "after-auth"]
TrailingSlash = Literal["reject", "accept"]


@dataclass(frozen=True)
class Behaviour:
    """Choices for what the reference marks as inferred [inf] or unknown."""

    forbidden_status: int = 401  # 4.0: 401 unauthorized_error; 4.2+: 403 forbidden_error
    not_master_status: int = 400  # replica answering any request: not_cluster_master
    removed_status: int = 400  # removed node answering any request: removed_from_cluster
    not_found_status: int = 404  # nodes list before a cluster exists, unknown node id
    put_on_initialized: PutOnInitialized = "reject"  # PUT on a node that is busy or clustered
    node_gate: NodeGate = "before-auth"  # replica/removed checks before or after authentication
    strict_host_ip: bool = True  # a PUT whose host_ip is not the machine's own ends FAILED
    list_joining: bool = True  # a joining node is listed (online false) in the master's list
    trailing_slash: TrailingSlash = "reject"  # /api/v3/cluster/ -> 404 like Flask, or accept
    start_glitches: int = 0  # the first N requests to a starting node answer 502 (services restart)


@dataclass(frozen=True)
class Options:
    machines: int = 3
    host: str = "127.0.0.1"
    port: int = 0
    endpoint_prefix: str = ""
    advertise_host: str = ""  # host written into endpoints and the control URL; default --host
    base_port: int = 0  # machine i listens on base_port + i (fixed ports for a Service); 0: ephemeral
    tls_cert: str = ""  # PEM certificate (chain) file: machines serve https (the control API stays http)
    tls_key: str = ""
    users: tuple[User, ...] = parse_users(DEFAULT_USERS)
    delays: Delays = Delays()
    behaviour: Behaviour = Behaviour()
