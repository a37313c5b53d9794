"""A replica's contact entries (``ContactTable``) behave as the dict of rows they replace, by
``(owner, contact)``, through any sequence of writes, copies and pickles, in less memory."""

from __future__ import annotations

import pickle
import tracemalloc
from collections.abc import Callable

from hypothesis import given
from hypothesis import strategies as st

from enterprise.replica import ContactDeleted, ContactTable, GroupData
from pool.store import ContactRow

ids = st.integers(min_value=1, max_value=6)
rows = st.builds(
    ContactRow, ids, ids, st.sampled_from([0, 200, 400]), st.sampled_from(["Contacts", "Team"])
)
#: a write (a row set) or a removal (a key)
ops = st.lists(st.one_of(rows, st.tuples(ids, ids)), max_size=40)


@given(ops)
def test_a_table_holds_what_a_dict_of_rows_would(steps: list[ContactRow | tuple[int, int]]) -> None:
    table, model = ContactTable(), dict[tuple[int, int], ContactRow]()
    for step in steps:
        if isinstance(step, ContactRow):
            key = (step.user_id, step.contact_id)
            table[key] = model[key] = step
        else:
            assert table.pop(step, None) == model.pop(step, None)
        assert len(table) == len(model)
    assert dict(table) == model
    assert sorted(table.rows(), key=lambda r: (r.user_id, r.contact_id)) == sorted(
        model.values(), key=lambda r: (r.user_id, r.contact_id)
    )
    for key in model:
        assert key in table
        assert table[key] == model[key]
    assert (0, 0) not in table
    assert "a key" not in table
    copy = table.copy()
    assert copy == table == ContactTable(model.values())
    assert pickle.loads(pickle.dumps(table)) == table
    copy[(9, 9)] = ContactRow(9, 9, 0, "Contacts")  # a copy is its own
    assert (9, 9) not in table
    assert len(copy) == len(table) + 1


def test_removing_an_owners_last_entry_leaves_the_table_equal_to_one_without_it() -> None:
    table = ContactTable([ContactRow(1, 2, 0, "Team")])
    del table[(1, 2)]
    assert table == ContactTable()
    assert len(table) == 0
    assert list(table) == []


def test_a_group_applies_writes_into_its_table_and_copies_it_whole() -> None:
    data = GroupData()
    data.apply(ContactRow(1, 2, 400, "Team"))
    data.apply(ContactRow(1, 3, 0, "Contacts"))
    data.apply(ContactDeleted(1, 3))
    snapshot = data.snapshot()
    assert dict(snapshot.contacts) == {(1, 2): ContactRow(1, 2, 400, "Team")}
    data.apply(ContactDeleted(1, 2))
    assert (1, 2) in snapshot.contacts
    assert (1, 2) not in data.contacts
    assert snapshot.lacking_from(data) == 1


def _traced(build: Callable[[], object]) -> int:
    """Bytes held by what ``build`` makes (traced while it lives)."""
    tracemalloc.start()
    try:
        held = build()
        size = tracemalloc.get_traced_memory()[0]
        del held
        return size
    finally:
        tracemalloc.stop()


def test_a_table_takes_under_half_the_memory_of_a_dict_of_rows() -> None:
    source = [
        (u, 1_000 + (u * 37 + k) % 5_000, "Contacts")
        for u in range(1_000, 1_100)
        for k in range(80)
    ]

    def as_dict() -> dict[tuple[int, int], ContactRow]:
        return {(u, c): ContactRow(u, c, 0, g) for u, c, g in source}

    def as_table() -> ContactTable:
        return ContactTable(ContactRow(u, c, 0, g) for u, c, g in source)

    assert _traced(as_table) * 2 < _traced(as_dict)
