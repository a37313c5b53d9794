"""poolsim's shared engine and API.

The domain core (every module directly in this package but ``cli``, ``client`` and
``sqlite_store``'s optional extras) imports no framework: no grpc, ray or prometheus_client.
``pool.api`` is the gRPC adapter over it, ``pool.client`` the asyncio client, ``pool._proto``
the generated code.
"""

__version__ = "0.1.0"
