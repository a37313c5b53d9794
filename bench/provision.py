"""Provisioning for ``poolsim run``: the users, then their contact lists (with access levels),
through ``PoolAdmin``, in chunks, timed for the report."""

from __future__ import annotations

import random
import time

from bench.run_options import RunOptions
from bench.schedule import Population
from pool._proto.poolsim.v1 import admin_pb2 as apb
from pool.client import AdminClient, PoolClient
from pool.errors import ResourceExhausted
from pool.privacy import AccessLevel

CONTACT_CHUNK = 20_000


def contact_entries(
    opts: RunOptions, pop: Population, seed: int
) -> list[tuple[str, str, int, str]]:
    """Contact lists with access levels: some Workgroup and Friends and Family (privacy)."""
    rng = random.Random(seed)
    entries = []
    for u, contacts in enumerate(pop.contacts):
        owner = f"sip:{opts.prefix}{u}@{opts.domain}"
        for c in contacts:
            x = rng.random()
            level = (
                AccessLevel.WORKGROUP
                if x < 0.10
                else AccessLevel.FRIENDS_AND_FAMILY
                if x < 0.15
                else AccessLevel.UNSPECIFIED
            )
            group = "Team" if level is AccessLevel.WORKGROUP else "Other Contacts"
            entries.append((owner, f"sip:{opts.prefix}{c}@{opts.domain}", int(level), group))
    return entries


async def _provision_contacts(admin: AdminClient, entries: list[tuple[str, str, int, str]]) -> int:
    """Provision ``entries`` in chunks; a chunk refused for a limit (an owner who keeps
    contacts from an earlier run of another size, say) is split until the owners who would
    overflow are found and left as they are. Returns how many owners were left so."""
    if not entries:
        return 0
    try:
        await admin.provision_contacts(entries)
        return 0
    except ResourceExhausted:
        owners = sorted({e[0] for e in entries})
        if len(owners) == 1:
            return 1
    half = owners[len(owners) // 2]
    left = [e for e in entries if e[0] < half]
    right = [e for e in entries if e[0] >= half]
    return await _provision_contacts(admin, left) + await _provision_contacts(admin, right)


async def prepare(
    opts: RunOptions, address: str, token: str, pop: Population, seed: int
) -> tuple[apb.PoolStatus, int, dict[str, float]]:
    """Provision users and contact lists; returns the pool's status, how many users'
    contact lists could not be provisioned (a limit: see ``_provision_contacts``) and how
    long each took (the report's ``provisioning``)."""
    async with PoolClient(address) as client:
        admin = AdminClient(client.channel(), token)
        t0 = time.perf_counter()
        await admin.provision_users(opts.prefix, opts.domain, opts.users, opts.password)
        t1 = time.perf_counter()
        entries = contact_entries(opts, pop, seed)
        kept = 0
        for i in range(0, len(entries), CONTACT_CHUNK):
            kept += await _provision_contacts(admin, entries[i : i + CONTACT_CHUNK])
        took = {
            "users": opts.users,
            "users_seconds": t1 - t0,
            "contact_entries": len(entries),
            "contacts_seconds": time.perf_counter() - t1,
        }
        return await admin.status(), kept, took
