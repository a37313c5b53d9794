"""`poolsim status`: GetPoolStatus as a readable table (what Get-CsPoolFabricState shows)."""

from __future__ import annotations

import grpc

from pool._proto.poolsim.v1 import admin_pb2 as apb
from pool.client import PoolClient


def _name(enum: object, value: int, prefix: str) -> str:
    return str(enum.Name(value)).removeprefix(prefix).lower().replace("_", "-")  # type: ignore[attr-defined]


def format_status(s: apb.PoolStatus) -> str:
    edition = _name(apb.Edition, s.edition, "EDITION_")
    quorum = _name(apb.QuorumState, s.quorum, "QUORUM_STATE_")
    lines = [
        f"pool {s.pool_name} ({edition} edition): quorum {quorum} - {s.quorum_detail}",
        f"users provisioned {s.users_provisioned}, signed in {s.users_signed_in}, "
        f"endpoints {s.endpoints_signed_in}",
        *(
            [", ".join(f"{k.replace('_', ' ')} {v}" for k, v in sorted(s.details.items()))]
            if s.details
            else []
        ),
        "",
        f"{'FRONT END':<10} {'STATE':<9} {'ADDRESS':<22} {'METRICS':<22} {'PRIM':>4} {'SEC':>4} "
        f"{'ENDPOINTS':>9}",
    ]
    for f in s.front_ends:
        state = _name(apb.FrontEndState, f.state, "FRONT_END_STATE_")
        lines.append(
            f"{f.id:<10} {state:<9} {f.address:<22} "
            f"{f.metrics_address or '-':<22} {f.primaries:>4} {f.secondaries:>4} {f.endpoints:>9}"
        )
    lines += ["", f"{'GROUP':>5} {'STATE':<12} {'PRIMARY':<10} {'SECONDARIES':<22} {'USERS':>6}"]
    for g in s.routing_groups:
        state = _name(apb.RoutingGroupState, g.state, "ROUTING_GROUP_STATE_")
        lines.append(
            f"{g.id:>5} {state:<12} {g.primary or '-':<10} "
            f"{','.join(g.secondaries) or '-':<22} {g.users:>6}"
        )
    return "\n".join(lines)


async def fetch_and_format(
    address: str, admin_token: str, credentials: grpc.ChannelCredentials | None = None
) -> str:
    """``credentials``: for a pool that serves TLS."""
    async with PoolClient(address, credentials=credentials) as client:
        return format_status(await client.admin(admin_token).status())
