"""PoolAdmin calls with the admin token."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from pool._proto.poolsim.v1 import admin_pb2 as apb
from pool._proto.poolsim.v1 import admin_pb2_grpc as apb_grpc
from pool.client.errors import _call, translate

Metadata = tuple[tuple[str, str], ...]

STOP_MODES: dict[str, apb.StopMode.ValueType] = {
    "drain": apb.STOP_MODE_DRAIN,
    "crash": apb.STOP_MODE_CRASH,
}
RESET_TYPES: dict[str, apb.ResetType.ValueType] = {
    "service-reset": apb.RESET_TYPE_SERVICE_RESET,
    "quorum-loss-recovery": apb.RESET_TYPE_QUORUM_LOSS_RECOVERY,
    "full-reset": apb.RESET_TYPE_FULL_RESET,
    "machine-state-removed": apb.RESET_TYPE_MACHINE_STATE_REMOVED,
    "quorum-loss-recovery-from-replicas": apb.RESET_TYPE_QUORUM_LOSS_RECOVERY_FROM_REPLICAS,
}


class AdminClient:
    """PoolAdmin calls with the admin token."""

    def __init__(self, channel: grpc.aio.Channel, token: str) -> None:
        self._stub = apb_grpc.PoolAdminStub(channel)
        self._md: Metadata = (("authorization", f"Bearer {token}"),)

    async def status(self) -> apb.PoolStatus:
        return await _call(self._stub.GetPoolStatus(apb.GetPoolStatusRequest(), metadata=self._md))

    async def provision_users(
        self, prefix: str, domain: str, count: int, password: str, start_index: int = 0
    ) -> apb.ProvisionUsersResponse:
        return await _call(
            self._stub.ProvisionUsers(
                apb.ProvisionUsersRequest(
                    prefix=prefix,
                    domain=domain,
                    count=count,
                    start_index=start_index,
                    password=password,
                ),
                metadata=self._md,
            )
        )

    async def provision_contacts(self, entries: Sequence[tuple[str, str, int, str]]) -> int:
        """Bulk contact lists: (owner uri, contact uri, access level, group) per entry."""
        request = apb.ProvisionContactsRequest(
            contacts=[
                apb.ContactEntry(owner_uri=o, contact_uri=c, access_level=level, group=g)
                for o, c, level, g in entries
            ]
        )
        reply = await _call(self._stub.ProvisionContacts(request, metadata=self._md))
        return reply.written

    async def call_detail_records(self, since: float = 0.0) -> list[apb.CallDetailRecord]:
        request = apb.ListCallDetailRecordsRequest()
        if since:
            request.since.seconds = int(since)
            request.since.nanos = int((since - int(since)) * 1e9)
        call = self._stub.ListCallDetailRecords(request, metadata=self._md)
        try:
            return [record async for record in call]
        except grpc.aio.AioRpcError as exc:
            raise translate(exc) from exc

    async def stop_front_end(self, front_end_id: str, mode: str = "drain") -> apb.PoolStatus:
        """Stop a front end (Enterprise): "drain" hands its routing groups over and signs its
        users out first, "crash" kills it at once. The pool's status right after."""
        stop_mode = STOP_MODES.get(mode)
        if stop_mode is None:
            raise ValueError(f"stop mode must be one of {', '.join(STOP_MODES)}, not {mode!r}")
        reply = await _call(
            self._stub.StopFrontEnd(
                apb.StopFrontEndRequest(id=front_end_id, mode=stop_mode), metadata=self._md
            )
        )
        return reply.status

    async def start_front_end(self, front_end_id: str) -> apb.PoolStatus:
        """Start a front end that is down, or a new one (Enterprise): the status once it is up."""
        reply = await _call(
            self._stub.StartFrontEnd(apb.StartFrontEndRequest(id=front_end_id), metadata=self._md)
        )
        return reply.status

    async def reset_pool_registrar_state(
        self, reset_type: str, front_end_id: str = ""
    ) -> apb.ResetPoolRegistrarStateResponse:
        """Reset-CsPoolRegistrarState (Enterprise): ``reset_type`` is one of "service-reset",
        "quorum-loss-recovery", "full-reset", "machine-state-removed" (with ``front_end_id``)."""
        value = RESET_TYPES.get(reset_type)
        if value is None:
            raise ValueError(
                f"reset type must be one of {', '.join(RESET_TYPES)}, not {reset_type!r}"
            )
        return await _call(
            self._stub.ResetPoolRegistrarState(
                apb.ResetPoolRegistrarStateRequest(reset_type=value, front_end_id=front_end_id),
                metadata=self._md,
            )
        )
