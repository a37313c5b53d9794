"""The Enterprise pool's back-end store as the fabric actor uses it: the directory's rows,
every group's persistent data read back from the lazy backups, the backups written, and what
a quorum-loss recovery from the backup lost. Functions over a ``pool.sqlite_store.SqliteStore``
and the ``pool.directory.Directory`` loaded from it; no Ray here."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from enterprise.replica import Backup, GroupData
from pool.directory import Directory
from pool.sqlite_store import SqliteStore
from pool.status import ResetType
from pool.store import UserRow

log = logging.getLogger("poolsim.enterprise")


def user_row(directory: Directory, user_id: int) -> UserRow:
    u = directory.by_id(user_id)
    return UserRow(u.id, u.uri, u.display_name, u.routing_group, u.salt, u.pw_hash, u.iterations)


def backend_groups(store: SqliteStore, directory: Directory) -> dict[int, GroupData]:
    """Every group's persistent data as the back-end store has it."""
    out: dict[int, GroupData] = {}
    for c in store.load_contacts():
        g = directory.by_id(c.user_id).routing_group
        out.setdefault(g, GroupData()).contacts[(c.user_id, c.contact_id)] = c
    for p in store.load_presence():
        g = directory.by_id(p.user_id).routing_group
        out.setdefault(g, GroupData()).presence[p.user_id] = p
    for r in store.load_conferences():
        g = directory.by_id(r.organizer_id).routing_group
        out.setdefault(g, GroupData()).conferences[r.conversation_id] = r
    return out


def lacking(
    store: SqliteStore, directory: Directory, replicas: Mapping[int, object]
) -> dict[int, int]:
    """For every group in quorum loss with a surviving replica (``replicas``: its
    ``GroupData``, or anything else when the survivor did not answer): how many of the writes
    it holds the back-end backup lacks (what reloading it from the backup loses)."""
    held = {g: data for g, data in replicas.items() if isinstance(data, GroupData)}
    if not held:
        return {}
    backup = backend_groups(store, directory)
    return {g: data.lacking_from(backup.get(g, GroupData())) for g, data in held.items()}


def write_backups(store: SqliteStore, backups: list[Backup]) -> None:
    """Write the lazy backups the front ends sent, in order."""
    for b in backups:
        store.put_contacts(b.contacts)
        for deleted in b.deleted:
            store.delete_contact(deleted.user_id, deleted.contact_id)
        for row in b.presence:
            store.put_presence(row)
        for conference in b.conferences:
            store.put_conference(conference)
        for ended in b.ended_conferences:
            store.delete_conference(ended.conversation_id, 0)


def log_recovery(kind: ResetType, lacking: dict[int, int]) -> None:
    """Say what a quorum-loss recovery lost: ``lacking`` is, per group, the acknowledged
    writes its surviving replica held that the backup lacked."""
    lost = sum(lacking.values())
    if kind is ResetType.FROM_REPLICAS:
        log.warning("quorum-loss recovery from the surviving replicas: nothing lost")
    elif lost:
        groups = ", ".join(f"{g}: {n}" for g, n in sorted(lacking.items()) if n)
        log.warning(
            "quorum-loss recovery reloaded the back-end backup, which lacked %d "
            "acknowledged writes that surviving replicas held (by group: %s); "
            "QUORUM_LOSS_RECOVERY_FROM_REPLICAS would have kept them",
            lost,
            groups,
        )
    else:
        log.warning("quorum-loss recovery: the backup held every surviving write")
