"""The PoolAdmin service. Every call needs the admin token; a user's token is refused."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from pool._proto.poolsim.v1 import admin_pb2 as apb
from pool._proto.poolsim.v1 import admin_pb2_grpc as apb_grpc
from pool.api import convert
from pool.api.metrics import Metrics
from pool.api.rpc import Handler, bearer, streaming, unary
from pool.engine import Engine
from pool.errors import PermissionDenied, Unauthenticated

Ctx = grpc.aio.ServicerContext[Any, Any]


class PoolAdminServicer(apb_grpc.PoolAdminServicer, Handler):
    def __init__(
        self,
        engine: Engine,
        admin_token: str,
        metrics: Metrics | None = None,
        monotonic: Callable[[], float] | None = None,
    ) -> None:
        if len(admin_token) < 16:
            raise ValueError("the admin token must be at least 16 characters")
        self.engine = engine
        self._token = admin_token.encode()
        self.metrics = metrics
        self.monotonic = monotonic or engine.clock.monotonic

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
        return convert.pool_status(self.engine.status())

    @unary
    async def ProvisionUsers(
        self, request: apb.ProvisionUsersRequest, context: Ctx
    ) -> apb.ProvisionUsersResponse:
        self._authorize(context)
        result = self.engine.provision(
            request.prefix, request.domain, request.count, request.start_index, request.password
        )
        return apb.ProvisionUsersResponse(
            created=result.created,
            already_existed=result.already_existed,
            first_uri=result.first_uri,
            last_uri=result.last_uri,
            users_provisioned=len(self.engine.directory),
        )

    @unary
    async def ProvisionContacts(
        self, request: apb.ProvisionContactsRequest, context: Ctx
    ) -> apb.ProvisionContactsResponse:
        self._authorize(context)
        entries = [(c.owner_uri, c.contact_uri, c.access_level, c.group) for c in request.contacts]
        return apb.ProvisionContactsResponse(written=self.engine.provision_contacts(entries))

    @streaming
    async def ListCallDetailRecords(
        self, request: apb.ListCallDetailRecordsRequest, context: Ctx
    ) -> AsyncIterator[apb.CallDetailRecord]:
        self._authorize(context)
        since = convert.seconds(request.since) if request.HasField("since") else 0.0
        for record in self.engine.call_detail_records(since):
            yield convert.call_detail_record(record)
