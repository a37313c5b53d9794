"""The catch-up window on three front ends in one process (the in-process transport of
test_node_moves): a primary's live batches raise its secondaries' marks only where they hold
everything before them; a secondary back in the table gets live writes before its catch-up,
its mark stays put until the catch-up lands, and after a fail-over to the other secondary
every acknowledged write is there. The fabric's decisions are tested in test_catching_up."""

from __future__ import annotations

from tests.enterprise.test_node_moves import Pool, table, uri

GROUP = 0


def marks(pool: Pool, fe: str) -> tuple[int, int]:
    data = pool[fe].store.groups[GROUP]
    return data.seq, data.top


def contacts(pool: Pool, fe: str) -> set[tuple[int, int]]:
    return set(pool[fe].store.groups[GROUP].contacts)


async def test_live_writes_during_a_catch_up_then_a_fail_over_lose_nothing() -> None:
    pool = Pool([0, 0, 0, 1])  # users 1..3 in group 0, user 4 in group 1
    await pool.push(table(1, ["A", "B", "C"], [["B", "C"], ["C", "A"], ["A", "B"]]), "A", "B", "C")
    writer = pool.sign_in("A", 1)
    await pool["A"].add_contact(writer, uri(2), 400, "Friends")  # acknowledged: on B and C
    await pool.settle()
    assert marks(pool, "B") == marks(pool, "C") == marks(pool, "A")
    seq = marks(pool, "A")[0]

    # C is away: the writes go on with B alone
    await pool.push(table(2, ["A", "B", "B"], [["B"], ["A"], ["A"]]), "A", "B", "C")
    await pool["A"].add_contact(writer, uri(3), 400, "Friends")
    await pool["A"].add_contact(writer, uri(4), 400, "Other")
    await pool.settle()
    # C is back in the table: a live write reaches it before its catch-up
    await pool.push(table(3, ["A", "B", "C"], [["B", "C"], ["C", "A"], ["A", "B"]]), "A", "B", "C")
    await pool["A"].remove_contact(writer, uri(2))
    await pool.settle()
    top = marks(pool, "A")[0]
    assert marks(pool, "C") == (seq, top)  # its mark stays where it has no gap
    assert marks(pool, "B") == (top, top)

    await pool["A"].catch_up(GROUP, "C", seq)  # no local store here: a whole copy
    await pool.settle()
    assert marks(pool, "C") == (top, top)
    assert contacts(pool, "C") == contacts(pool, "A")

    # A dies; B, the freshest, serves: every acknowledged write is there, C follows it
    await pool.push(table(4, ["B", "B", "C"], [["C"], ["C"], ["B"]]), "B", "C")
    assert contacts(pool, "B") == {(1, 3), (1, 4)}
    moved = await pool["B"].sign_in(uri(1), "pw", "desktop")
    await pool["B"].add_contact(moved, uri(2), 400, "Back")
    await pool.settle()
    assert marks(pool, "C") == marks(pool, "B") == (top + 1, top + 1)
    assert contacts(pool, "C") == contacts(pool, "B") == {(1, 2), (1, 3), (1, 4)}
