"""Administration from one front end: the fabric answers (the typed calls of ``FabricCalls``),
except bulk contacts, which every owner's home checks and then writes."""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Sequence

from enterprise.routing import Routing
from enterprise.wire import Transport
from pool.cdr import StoredRecord
from pool.directory import Directory, ProvisionResult
from pool.errors import Unavailable
from pool.presence_service import BulkEntry
from pool.status import PoolStatusInfo, ResetType


class FabricCalls:
    """The fabric's methods a front end calls, typed (the transport carries them by name)."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    async def status(self) -> PoolStatusInfo:
        info: PoolStatusInfo = await self.transport.fabric("status")
        return info

    async def provision(
        self, prefix: str, domain: str, count: int, start_index: int, password: str
    ) -> tuple[ProvisionResult, int]:
        result: tuple[ProvisionResult, int] = await self.transport.fabric(
            "provision", prefix, domain, count, start_index, password
        )
        return result

    async def call_detail_records(self, since: float) -> Sequence[StoredRecord]:
        records: Sequence[StoredRecord] = await self.transport.fabric("call_detail_records", since)
        return records

    async def stop_front_end(self, front_end_id: str, crash: bool, via: str) -> PoolStatusInfo:
        """``via``: the front end the request came through (it answers before it stops)."""
        info: PoolStatusInfo = await self.transport.fabric(
            "stop_front_end", front_end_id, crash, via
        )
        return info

    async def start_front_end(self, front_end_id: str) -> PoolStatusInfo:
        info: PoolStatusInfo = await self.transport.fabric("start_front_end", front_end_id)
        return info

    async def reset(
        self, reset_type: ResetType, front_end_id: str
    ) -> tuple[list[int], PoolStatusInfo]:
        result: tuple[list[int], PoolStatusInfo] = await self.transport.fabric(
            "reset", reset_type, front_end_id
        )
        return result


async def provision_contacts(
    transport: Transport, routing: Routing, directory: Directory, entries: list[BulkEntry]
) -> int:
    """Split by the owners' homes; every home checks its part before any writes."""
    table = routing.check_serving()
    parts: dict[str, list[BulkEntry]] = {}
    for entry in entries:
        owner = directory.require(entry[0], field_name="owner_uri")
        home = table.homes[owner.routing_group]
        if not home:
            raise Unavailable(table.reasons[owner.routing_group])
        parts.setdefault(home, []).append(entry)
    # the homes check their parts at once, then write them at once (each waits for its
    # secondaries): one round trip each way, not one per home
    blobs = {home: pickle.dumps(part, pickle.HIGHEST_PROTOCOL) for home, part in parts.items()}
    await asyncio.gather(
        *(transport.front_end(home, "check_contacts", blob) for home, blob in blobs.items())
    )
    written = await asyncio.gather(
        *(transport.front_end(home, "provision_contacts", blob) for home, blob in blobs.items())
    )
    return sum(written)


def bulk_entries(blob: bytes) -> list[BulkEntry]:
    """A home's part of a bulk contact list as ``provision_contacts`` sends it: pickled once
    by the sender (Ray's own serializer took a third of the admin front end's processor on
    a list of tuples), read here."""
    entries: list[BulkEntry] = pickle.loads(blob)
    return entries
