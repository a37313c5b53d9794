"""The routing table as one front end reads it: where a user is homed, which front end hosts a
conversation, whether this front end serves now, and the redirects that send a client home.

The table comes from the fabric and is swapped in whole (``enterprise.handover`` applies it);
everything here is a look-up, never I/O. ``loaded`` is the set of groups whose primary is
here and whose data is loaded: a user of one of them is *local*.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from enterprise.routing_table import RoutingTable
from pool.conversation import group_of
from pool.directory import User
from pool.errors import Redirect, Unavailable

MOVED_TOKENS = 200_000  # tokens of moved endpoints remembered for their redirect


class Routing:
    def __init__(self, fe_id: str) -> None:
        self.fe_id = fe_id
        self.table: RoutingTable | None = None
        self.pool_reason = "the pool has not started yet: waiting for its first front ends"
        self.loaded: set[int] = set()  # groups whose primary is here and is loaded
        self.users_by_group: dict[int, list[int]] = {}
        self.moved: OrderedDict[str, int] = OrderedDict()  # token -> group, for the redirect

    @property
    def version(self) -> int:
        table = self.table
        return table.version if table is not None else 0

    def add_user(self, user_id: int, group: int) -> None:
        self.users_by_group.setdefault(group, []).append(user_id)

    def users_of(self, group: int) -> list[int]:
        return self.users_by_group.get(group, [])

    def home_of(self, user: User) -> str:
        table = self.table
        return table.homes[user.routing_group] if table is not None else ""

    def is_local(self, user: User) -> bool:
        return user.routing_group in self.loaded

    def is_remote(self, user: User) -> str:
        """The home of ``user`` when it is another front end, else ""."""
        home = self.home_of(user)
        return home if home and home != self.fe_id else ""

    def host_of(self, conversation_id: str) -> str:
        """The front end hosting a conversation now (this one for an id that is not ours, so
        the engine answers for it; "" while its group is not served)."""
        g = group_of(conversation_id)
        if g is None:
            return self.fe_id
        table = self.table
        return table.homes[g] if table is not None and g < len(table.homes) else ""

    def by_home(self, users: Iterable[User]) -> dict[str, list[User]]:
        """Users homed on other front ends, by home (users of unserved groups are left out)."""
        out: dict[str, list[User]] = {}
        for user in users:
            if not self.is_local(user):
                home = self.home_of(user)
                if home:
                    out.setdefault(home, []).append(user)
        return out

    # --- serving checks ---

    def check_serving(self) -> RoutingTable:
        table = self.table
        if table is None or self.pool_reason:
            raise Unavailable(self.pool_reason or "the pool has not started yet")
        return table

    def check_served_here(self, users: list[User]) -> list[User]:
        for user in users:
            if not self.is_local(user):
                raise Unavailable(
                    f"routing group {user.routing_group} is not served by front end "
                    f"{self.fe_id} any more: ask its new home"
                )
        return users

    def check_host(self, host: str, conversation_id: str) -> None:
        """``host`` is up: a call may go there."""
        table = self.check_serving()
        if host not in table.addresses:
            g = group_of(conversation_id)
            reason = table.reasons[g] if g is not None and g < len(table.reasons) else ""
            raise Unavailable(
                f"conversation {conversation_id} has no host now: {reason or 'try again'}"
            )

    def check_home_for_sign_in(self, user: User) -> None:
        """Raise ``Redirect`` (or ``Unavailable``) unless ``user`` is homed here."""
        table = self.check_serving()
        g = user.routing_group
        home = table.homes[g]
        if not home:
            raise Unavailable(table.reasons[g] or f"routing group {g} is not served")
        if home != self.fe_id:
            address = table.address_of(home)
            raise Redirect(
                user.uri,
                address,
                home,
                f"{user.uri} is homed on front end {home} at {address} (routing group {g}): "
                "sign in there",
            )

    def remember_moved(self, token: str, group: int) -> None:
        self.moved[token] = group
        while len(self.moved) > MOVED_TOKENS:
            self.moved.popitem(last=False)

    def check_token(self, token: str) -> None:
        """Raise ``Redirect`` for the token of an endpoint whose group moved away, and
        ``Unavailable`` while the pool does not serve."""
        group = self.moved.get(token)
        if group is not None:
            table = self.check_serving()
            home = table.homes[group]
            if not home:
                raise Unavailable(table.reasons[group] or f"routing group {group} is not served")
            address = table.address_of(home)
            raise Redirect(
                "",
                address,
                home,
                f"routing group {group} moved to front end {home} at {address}: sign in there",
            )
        self.check_serving()
