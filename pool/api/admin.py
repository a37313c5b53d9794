"""The PoolAdmin service. Every call needs the admin token; a user's token is refused."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from pool import heap
from pool._proto.poolsim.v1 import admin_pb2 as apb
from pool._proto.poolsim.v1 import admin_pb2_grpc as apb_grpc
from pool.api import convert
from pool.api.metrics import Metrics
from pool.api.rpc import Handler, bearer, streaming, unary
from pool.errors import InvalidArgument, PermissionDenied, Unauthenticated
from pool.presence_service import BulkEntry
from pool.service import PoolService
from pool.status import ResetType

Ctx = grpc.aio.ServicerContext[Any, Any]

#: the proto's reset types as the domain's
RESET_TYPES = {
    apb.RESET_TYPE_SERVICE_RESET: ResetType.SERVICE_RESET,
    apb.RESET_TYPE_QUORUM_LOSS_RECOVERY: ResetType.QUORUM_LOSS_RECOVERY,
    apb.RESET_TYPE_FULL_RESET: ResetType.FULL_RESET,
    apb.RESET_TYPE_MACHINE_STATE_REMOVED: ResetType.MACHINE_STATE_REMOVED,
    apb.RESET_TYPE_QUORUM_LOSS_RECOVERY_FROM_REPLICAS: ResetType.FROM_REPLICAS,
}


class PoolAdminServicer(apb_grpc.PoolAdminServicer, Handler):
    def __init__(
        self,
        service: PoolService,
        admin_token: str,
        metrics: Metrics | None = None,
        monotonic: Callable[[], float] | None = None,
    ) -> None:
        if len(admin_token) < 16:
            raise ValueError("the admin token must be at least 16 characters")
        self.service = service
        self.engine = service.engine
        self._token = admin_token.encode()
        self.metrics = metrics
        self.monotonic = monotonic or service.engine.clock.monotonic

    def _authorize(self, context: Ctx) -> None:
        token = bearer(context)
        if not token:
            raise Unauthenticated(
                "no admin token: send 'authorization: Bearer <admin token>' (the token file's "
                "path is printed when the server starts)"
            )
        if hmac.compare_digest(token.encode(), self._token):
            return
        try:
            self.engine.registrar.authenticate(token)
        except Unauthenticated:
            raise Unauthenticated("admin token is not valid") from None
        raise PermissionDenied("this is a user's token: pool administration needs the admin token")

    @unary
    async def GetPoolStatus(
        self, request: apb.GetPoolStatusRequest, context: Ctx
    ) -> apb.PoolStatus:
        self._authorize(context)
        return convert.pool_status(await self.service.status())

    @unary
    async def ProvisionUsers(
        self, request: apb.ProvisionUsersRequest, context: Ctx
    ) -> apb.ProvisionUsersResponse:
        self._authorize(context)
        result, provisioned = await self.service.provision(
            request.prefix, request.domain, request.count, request.start_index, request.password
        )
        heap.settle()  # the users live until the front end stops: out of the collector's scans
        return apb.ProvisionUsersResponse(
            created=result.created,
            already_existed=result.already_existed,
            first_uri=result.first_uri,
            last_uri=result.last_uri,
            users_provisioned=provisioned,
        )

    @unary
    async def ProvisionContacts(
        self, request: apb.ProvisionContactsRequest, context: Ctx
    ) -> apb.ProvisionContactsResponse:
        self._authorize(context)
        entries: list[BulkEntry] = [
            (c.owner_uri, c.contact_uri, c.access_level, c.group) for c in request.contacts
        ]
        written = await self.service.provision_contacts(entries)
        heap.settle()  # as the users
        return apb.ProvisionContactsResponse(written=written)

    @streaming
    async def ListCallDetailRecords(
        self, request: apb.ListCallDetailRecordsRequest, context: Ctx
    ) -> AsyncIterator[apb.CallDetailRecord]:
        self._authorize(context)
        since = convert.seconds(request.since) if request.HasField("since") else 0.0
        for record in await self.service.call_detail_records(since):
            yield convert.call_detail_record(record)

    @unary
    async def StopFrontEnd(
        self, request: apb.StopFrontEndRequest, context: Ctx
    ) -> apb.StopFrontEndResponse:
        self._authorize(context)
        crash = request.mode == apb.STOP_MODE_CRASH
        status = await self.service.stop_front_end(request.id, crash)
        return apb.StopFrontEndResponse(status=convert.pool_status(status))

    @unary
    async def StartFrontEnd(
        self, request: apb.StartFrontEndRequest, context: Ctx
    ) -> apb.StartFrontEndResponse:
        self._authorize(context)
        status = await self.service.start_front_end(request.id)
        return apb.StartFrontEndResponse(status=convert.pool_status(status))

    @unary
    async def ResetPoolRegistrarState(
        self, request: apb.ResetPoolRegistrarStateRequest, context: Ctx
    ) -> apb.ResetPoolRegistrarStateResponse:
        self._authorize(context)
        reset_type = RESET_TYPES.get(request.reset_type)
        if reset_type is None:
            raise InvalidArgument(
                f"reset_type {request.reset_type} is not a reset: use SERVICE_RESET, "
                "QUORUM_LOSS_RECOVERY, FULL_RESET, MACHINE_STATE_REMOVED or "
                "QUORUM_LOSS_RECOVERY_FROM_REPLICAS"
            )
        reloaded, status = await self.service.reset_registrar_state(
            reset_type, request.front_end_id
        )
        return apb.ResetPoolRegistrarStateResponse(
            reloaded_groups=reloaded, status=convert.pool_status(status)
        )
