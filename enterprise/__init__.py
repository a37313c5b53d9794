"""Enterprise Edition: a pool of 2 to 12 front ends on Ray, with a fabric that runs it.

Where each concern lives (imports only point down this list's dependencies, never in a
circle; ``tests/test_layout.py`` checks that, and that no module here writes a field of a
user, an endpoint or a conversation: the engine in ``pool.engine`` does):

The pool manager, pure (no Ray, injected time):

    quorum          Lync's first-start and functional quorum tables, the quorum state machine
    placement       routing groups' primaries and secondaries, promotion, rebuild, spreading
    fabric_config   the fabric's settings and SPEC's defaults, validated once
    lineage         epochs of a group's primaries: whose history is a prefix of whose, so a
                    returning replica catches up with only what it missed
    changes         what a fabric call changed, for the fabric actor to carry out
    routing_table   the versioned, immutable routing table the fabric publishes
    front_ends      an FE's states and the moves between them; Lync's two-front-end rule
    returning       replicas that come back: taken back and caught up, dropped, or a lost
                    group recovered from them
    recovery        the operator's quorum-loss recovery (from the backup or the replicas)
                    and full reset
    fabric_view     served or not and why, the fabric's counters, GetPoolStatus's view
    fabric_core     the fabric's state and the upkeep every call ends with: fail-over,
                    rebuild, spreading, rebalancing, resets, publishing the table
    fabric          ``Fabric``: the public calls (membership, heartbeats, stop and start,
                    resets, status) and the read side, over ``fabric_core``

One front end, pure (an in-process transport drives it in tests):

    wire            the typed messages between front ends, their replies, ``Failure`` (a
                    domain error across the wire, through ``pool.api.status``), ``Transport``
    link            batches per destination, one in flight; the replica links apart
    routing         the routing table as this front end reads it: homes, hosts, serving
                    checks, redirects, moved tokens
    proxies         stand-in endpoints (``pool.registrar.StandIn``) for remote endpoints
                    and remote users
    memberships     conversations hosted elsewhere that endpoints here are in or invited to
    replica         a group's persistent data (``GroupData``), typed writes, the store
                    that queues them for secondaries and backups
    local_store     the front end's own SQLite store of its replicas and registrations
    replication     shipping writes, the replicated barrier, install, copy, drop, backup
    handover        applying a new table: promote, demote, end moved conversations, rewatch
    handlers        the far side: ``match`` on the message type, one function each
    admin           typed fabric calls; bulk contacts split by home
    node            ``FrontEndNode``: the ``PoolService`` facade over all of the above

On Ray:

    options         ``PoolOptions``: one pool's settings
    peers           the front ends' own TCP connections for links' batches (a secret given
                    through Ray opens one), instead of a Ray call per batch
    actors          ``FrontEndActor`` (a node, its gRPC server, metrics) and ``RayTransport``
    backend         the back-end store as the fabric actor uses it: rows, groups' data
                    read back from the backups, backups written, what a recovery lost
    fabric_actor    ``FabricActor``: runs the fabric, the back-end store, the heartbeats
    metrics         what an Enterprise front end adds to its Prometheus metrics (its
                    cross-node histograms are made first and handed to the node)
    pool            start and stop a pool; ``poolsim serve --edition enterprise``
    command         the edition as ``poolsim serve`` finds it (entry point ``poolsim.editions``)
"""
