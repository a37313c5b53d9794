"""In-process benchmarks: the IMMCU's routing core, and a Standard engine's memory per user.

``routing-core`` times ``Engine.send_message`` plus ``Engine.drain`` of every recipient against
a bare loop of the same shape (a dict look-up of the conversation, a deque append per
recipient, a popleft per recipient). ``memory`` runs in a fresh interpreter
(``python -m bench.hotpath_core memory ...``) so nothing measured before pollutes its RSS.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import pathlib
import random
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from bench.hotpath_common import (
    GIB,
    Options,
    Result,
    latency_summary,
    make_row,
    median,
    rss_bytes,
)
from bench.hotpath_plain import Route, plain_loop, plain_op, plain_table
from pool.clock import SystemClock
from pool.config import EngineConfig, Limits
from pool.engine import Engine
from pool.observer import NULL_OBSERVER, Observer
from pool.presence_service import BulkContact, BulkEntry
from pool.registrar import Endpoint
from pool.sqlite_store import SqliteStore
from pool.store import MemoryStore, Store

DOMAIN = "contoso.com"
PASSWORD = "pw"
BODY = "hello from the hot-path benchmark: " + "x" * 29  # 64 characters
CONTENT_TYPE = "text/plain"
CORE_TARGET = 0.5
MEMORY_TARGET = 1.0  # projected memory / budget
CONTACT_CHUNK = 8_000  # contact entries per provision_contacts call (small transients)


# --- routing-core ---


def _uri(i: int) -> str:
    return f"sip:user{i}@{DOMAIN}"


def _engine(
    users: int,
    observer: Observer = NULL_OBSERVER,
    max_users: int = 12_000,
    store: Store | None = None,
) -> Engine:
    config = EngineConfig(
        password_iterations=1, limits=Limits(max_users_per_registrar=max(max_users, users))
    )
    engine = Engine(config, store or MemoryStore(), SystemClock(), observer)
    for start in range(0, users, 100_000):
        engine.provision("user", DOMAIN, min(100_000, users - start), start, PASSWORD)
    return engine


def _sign_in(engine: Engine, i: int) -> Endpoint:
    user = engine.directory.get(_uri(i))
    if user is None:
        raise RuntimeError(f"{_uri(i)} is not provisioned")
    return engine.sign_in(user, "desktop")


def _conversation(engine: Engine, sender: Endpoint, recipients: list[Endpoint]) -> Route:
    """A conversation every recipient accepted; all queues drained."""
    conv, _ = engine.create_conversation(sender, [r.uri for r in recipients], "", None)
    for r in recipients:
        engine.accept(r, conv.id)
    for ep in (sender, *recipients):
        engine.drain(ep, 10_000)
    return sender, conv.id, recipients


def build_routes(
    pairs: int, conference: int, observer: Observer = NULL_OBSERVER
) -> tuple[Engine, list[Route], Route]:
    """``pairs`` two-party conversations, then one conference of ``conference`` people."""
    engine = _engine(2 * pairs + conference, observer)
    eps = [_sign_in(engine, i) for i in range(2 * pairs + conference)]
    routes = [_conversation(engine, eps[2 * i], [eps[2 * i + 1]]) for i in range(pairs)]
    conf = eps[2 * pairs :]
    return engine, routes, _conversation(engine, conf[0], conf[1:])


def _poolsim_loop(engine: Engine, routes: list[Route], messages: int) -> float:
    """Seconds to route ``messages`` (rounded up to whole passes over ``routes``)."""
    send, drain = engine.send_message, engine.drain
    passes = max(1, -(-messages // len(routes)))
    start = time.perf_counter()
    for _ in range(passes):
        for sender, cid, recipients in routes:
            send(sender, cid, BODY, CONTENT_TYPE)
            for r in recipients:
                drain(r)
    return (time.perf_counter() - start) / (passes * len(routes))


def _bare_table(routes: list[Route]) -> tuple[dict[str, list[deque[str]]], list[str]]:
    table = {cid: [deque[str]() for _ in recipients] for _, cid, recipients in routes}
    return table, [cid for _, cid, _ in routes]


def _bare_loop(table: dict[str, list[deque[str]]], keys: list[str], messages: int) -> float:
    """The minimum work of the same shape; seconds per message."""
    passes = max(1, -(-messages // len(keys)))
    body = BODY
    start = time.perf_counter()
    for _ in range(passes):
        for cid in keys:
            queues = table[cid]
            for q in queues:
                q.append(body)
            for q in queues:
                q.popleft()
    return (time.perf_counter() - start) / (passes * len(keys))


def _latencies(op: Callable[[int], None], samples: int, width: int) -> list[float]:
    """Per-call seconds of ``op(i)`` (timer overhead included)."""
    pc = time.perf_counter_ns
    out: list[float] = []
    append = out.append
    for i in range(samples):
        t = pc()
        op(i % width)
        append((pc() - t) / 1e9)
    return out


def _one_shape(
    engine: Engine, routes: list[Route], messages: int, opts: Options
) -> tuple[float, float, float, dict[str, float]]:
    """(poolsim msg/s, plain baseline msg/s, dict-and-deque floor msg/s, latencies) for one
    conversation shape."""
    table, keys = _bare_table(routes)
    plain = plain_table(routes)
    _poolsim_loop(engine, routes, messages // 10)  # warm up all three
    plain_loop(plain, messages // 10, BODY, CONTENT_TYPE)
    _bare_loop(table, keys, messages // 10)
    ours: list[float] = []
    least: list[float] = []
    bare: list[float] = []
    for _ in range(opts.core_repeats):  # alternate, so drift hits all alike
        ours.append(1.0 / _poolsim_loop(engine, routes, messages))
        least.append(1.0 / plain_loop(plain, messages * 2, BODY, CONTENT_TYPE))
        bare.append(1.0 / _bare_loop(table, keys, messages * 5))
    send, drain = engine.send_message, engine.drain

    def poolsim_op(i: int) -> None:
        sender, cid, recipients = routes[i]
        send(sender, cid, BODY, CONTENT_TYPE)
        for r in recipients:
            drain(r)

    samples = opts.core_latency_samples if len(routes) > 1 else opts.core_latency_samples // 5
    lat = {
        **latency_summary("poolsim", _latencies(poolsim_op, samples, len(routes))),
        **latency_summary(
            "baseline", _latencies(plain_op(plain, BODY, CONTENT_TYPE), samples, len(routes))
        ),
    }
    return median(ours), median(least), median(bare), lat


def run_routing_core(opts: Options) -> Result:
    result = Result("routing-core")
    engine, routes, conference = build_routes(opts.core_pairs, opts.core_conference)
    recipients = len(conference[2])
    timer_ns = median(_latencies(lambda i: None, 20_000, 1)) * 1e9
    shapes = [
        ("routing-core/two-party", routes, opts.core_messages, 1),
        (f"routing-core/conference-{opts.core_conference}", [conference], 0, recipients),
    ]
    for name, shape_routes, messages, fan in shapes:
        count = messages or max(1000, opts.core_messages // 10)
        ours, least, bare, lat = _one_shape(engine, shape_routes, count, opts)
        result.rows.append(
            make_row(
                name,
                "msg/s",
                ours,
                least,
                CORE_TARGET,
                latency_us=lat,
                details={
                    "baseline_is": "bench.hotpath_plain: the same job written plainly",
                    "recipients_per_message": fan,
                    "poolsim_deliveries_per_s": ours * fan,
                    "baseline_deliveries_per_s": least * fan,
                    "floor_msg_per_s": bare,
                    "ratio_to_floor": ours / bare if bare else 0.0,
                    "repeats": opts.core_repeats,
                    "messages_per_repeat": count,
                },
            )
        )
        result.notes.append(
            f"{name}: baseline is the same job written plainly (bench/hotpath_plain.py); the "
            f"physical floor, a dict look-up and a deque append per recipient with no event, "
            f"does {bare:,.0f} msg/s (poolsim at {ours / bare:.3f} of it)"
        )
    # the same two-party shape with the Prometheus observer a served engine uses
    from prometheus_client import CollectorRegistry

    from pool.api.metrics import Metrics

    m_engine, m_routes, _ = build_routes(opts.core_pairs, 2, Metrics(CollectorRegistry()))
    _poolsim_loop(m_engine, m_routes, opts.core_messages // 10)
    with_metrics = median(
        [1.0 / _poolsim_loop(m_engine, m_routes, opts.core_messages) for _ in range(3)]
    )
    result.rows[0].details["poolsim_with_metrics_observer_msg_per_s"] = with_metrics
    result.params = {
        "pairs": opts.core_pairs,
        "conference_size": opts.core_conference,
        "store": "MemoryStore",
        "clock": "SystemClock",
        "observer": "NULL_OBSERVER (Metrics variant in details)",
        "body_chars": len(BODY),
        "timer_overhead_ns_p50": timer_ns,
    }
    result.notes.append(
        "throughput: median of alternating repetitions; latency: one send plus the drain of "
        f"every recipient, timed per call (timer overhead about {timer_ns:.0f} ns included)"
    )
    return result


# --- memory ---


def _provision_contacts(engine: Engine, users: int, contacts: int, seed: int) -> None:
    """``contacts`` random distinct others per user, in small chunks (no big transients)."""
    entries: list[BulkEntry] = []
    for i in range(users):
        rng = random.Random(seed * 1_000_003 + i)
        owner = _uri(i)
        for j in rng.sample(range(users - 1), contacts):
            entries.append(BulkContact(owner, _uri(j + 1 if j >= i else j), 0, ""))
        if len(entries) >= CONTACT_CHUNK:
            engine.provision_contacts(entries)
            entries = []
    if entries:
        engine.provision_contacts(entries)


def _table_bytes(table: dict[Any, Any], sample: int) -> int:
    """The dict plus its keys and values (each sized on a sample, then scaled)."""
    keys = list(itertools.islice(table, sample))
    if not keys:
        return sys.getsizeof(table)
    each = sum(sys.getsizeof(k) + sys.getsizeof(table[k]) for k in keys) / len(keys)
    return sys.getsizeof(table) + int(each * len(table))


def _store_bytes(store: MemoryStore, sample: int = 2000) -> int:
    """Estimated bytes of the MemoryStore's own copy of users and contacts."""
    return _table_bytes(store.contacts, sample) + _table_bytes(store.users, sample)


def memory_child(
    users: int, contacts: int, subscriptions: int, seed: int, store_kind: str = "sqlite"
) -> dict[str, Any]:
    """Build the engine in this (fresh) process over ``store_kind`` (``sqlite``: the Standard
    front end's own store, in a temporary folder; ``memory``: the test fake, which keeps a
    copy of every row); RSS after each phase."""
    with tempfile.TemporaryDirectory(prefix="poolsim-memory-") as folder:
        store: Store = (
            SqliteStore(pathlib.Path(folder) / "pool.db")
            if store_kind == "sqlite"
            else MemoryStore()
        )
        return _measure_memory(users, contacts, subscriptions, seed, store)


def _measure_memory(
    users: int, contacts: int, subscriptions: int, seed: int, store: Store
) -> dict[str, Any]:
    gc.collect()
    phases: list[tuple[str, int, float]] = [("start", rss_bytes(), time.perf_counter())]

    def mark(name: str) -> None:
        gc.collect()
        phases.append((name, rss_bytes(), time.perf_counter()))

    engine = _engine(users, max_users=1_000_000, store=store)
    mark("users provisioned")
    _provision_contacts(engine, users, contacts, seed)
    mark("contacts provisioned")
    for i in range(users):
        _sign_in(engine, i)
    mark("signed in")
    for user in engine.directory:
        ep = user.endpoints[0]
        targets = [engine.directory.by_id(cid).uri for cid in list(user.contacts)[:subscriptions]]
        engine.subscribe(ep, targets, 0.0)
    mark("subscribed")
    store = engine.store
    store_bytes = _store_bytes(store) if isinstance(store, MemoryStore) else 0
    return {
        "users": users,
        "contacts_per_user": contacts,
        "subscriptions_per_user": subscriptions,
        "rss_start": phases[0][1],
        "rss_end": phases[-1][1],
        "growth": phases[-1][1] - phases[0][1],
        "phases": [
            {
                "phase": name,
                "rss": rss,
                "bytes_per_user": (rss - phases[k][1]) / users,
                "seconds": at - phases[k][2],
            }
            for k, (name, rss, at) in enumerate(phases[1:])
        ],
        "memory_store_bytes": store_bytes,
        "signed_in": engine.users_signed_in,
        "watch_edges": sum(len(u.watchers) for u in engine.directory),
    }


def _memory_subprocess(opts: Options, users: int) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "bench.hotpath_core",
        "memory",
        f"--users={users}",
        f"--contacts={opts.memory_contacts}",
        f"--subscriptions={opts.memory_subscriptions}",
        f"--seed={opts.seed}",
        f"--store={opts.e2e_store}",
    ]
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=opts.memory_timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"memory child exited {done.returncode}: {done.stderr[-2000:]}")
    data: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return data


def run_memory(opts: Options) -> Result:
    result = Result("memory")
    extrapolated = False
    try:
        data = _memory_subprocess(opts, opts.memory_users)
    except subprocess.TimeoutExpired:
        result.notes.append(
            f"{opts.memory_users:,} users did not finish within {opts.memory_timeout:.0f} s: "
            f"measured {opts.memory_fallback_users:,} instead"
        )
        data = _memory_subprocess(opts, opts.memory_fallback_users)
    users = int(data["users"])
    target_users = opts.memory_target_users
    extrapolated = users != target_users
    per_user = data["growth"] / users
    projected = per_user * target_users
    store_per_user = data["memory_store_bytes"] / users
    how = (
        f"measured {users:,} users, extrapolated linearly to {target_users:,}"
        if extrapolated
        else f"measured {target_users:,} users directly"
    )
    result.notes.append(how)
    if opts.e2e_store == "memory":
        result.notes.append(
            f"of which the MemoryStore test fake's own copy of the rows is about "
            f"{store_per_user:,.0f} bytes/user (SqliteStore keeps these on disk)"
        )
    result.rows.append(
        make_row(
            f"memory/{target_users // 1000}k-users",
            "bytes",
            projected,
            float(opts.memory_target_bytes),
            MEMORY_TARGET,
            higher_is_better=False,
            details={
                "measured_users": users,
                "extrapolated": extrapolated,
                "bytes_per_user": per_user,
                "bytes_per_user_without_memory_store_copy": per_user - store_per_user,
                "projected_without_memory_store_copy": (per_user - store_per_user) * target_users,
                "projected_process_rss": data["rss_start"] + projected,
                "baseline_is": (
                    f"the {opts.memory_target_bytes / GIB:g} GiB goal for "
                    f"{target_users:,} users on one Standard front end (no baseline process)"
                ),
                "child": data,
            },
        )
    )
    result.params = {
        "users": users,
        "contacts_per_user": opts.memory_contacts,
        "subscriptions_per_user": opts.memory_subscriptions,
        "store": "SqliteStore" if opts.e2e_store == "sqlite" else "MemoryStore",
        "password_iterations": 1,
    }
    return result


def _child_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hotpath_core")
    sub = parser.add_subparsers(dest="cmd", required=True)
    mem = sub.add_parser("memory", help="build an engine and print its RSS phases as JSON")
    mem.add_argument("--users", type=int, required=True)
    mem.add_argument("--contacts", type=int, default=80)
    mem.add_argument("--subscriptions", type=int, default=40)
    mem.add_argument("--seed", type=int, default=1)
    mem.add_argument("--store", choices=["sqlite", "memory"], default="sqlite")
    a = parser.parse_args(argv)
    data = memory_child(a.users, a.contacts, a.subscriptions, a.seed, a.store)
    print(json.dumps(data), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
