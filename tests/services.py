"""Services the test settings need before Django starts: a private PostgreSQL cluster.

The first process that imports the test settings starts the cluster and publishes its port
in ``DEDUPSTORE_TEST_POSTGRES_PORT``; child processes (workers of the crash tests) inherit
it and share the cluster. The starting process stops it by PID at exit.
"""

from __future__ import annotations

import atexit
import os

from dedupstore.testing.postgres import PostgresServer, PostgresServerError
from dedupstore.testing.redis import RedisServer, RedisServerError

PORT_VARIABLE = "DEDUPSTORE_TEST_POSTGRES_PORT"
REDIS_PORT_VARIABLE = "DEDUPSTORE_TEST_REDIS_PORT"

#: The Redis of STORAGES["ops"] (manage.py dedupstore tests), in the process that started
#: it: those tests kill and restart it (a Redis restarted without persistence).
OPS_REDIS: RedisServer | None = None


def ops_redis_url() -> str:
    """Return the URL of the Redis of ``STORAGES["ops"]``, a server of its own, started once.

    Falls back to ``locmem://`` when no redis-server is installed.
    """
    global OPS_REDIS
    if OPS_REDIS is None:
        try:
            OPS_REDIS = RedisServer().start()
        except RedisServerError:
            return "locmem://settings-ops"
        atexit.register(lambda: OPS_REDIS is not None and OPS_REDIS.stop())
    return OPS_REDIS.url


def settings_redis_url() -> str:
    """Return the URL of a Redis for storages the test settings define, starting it once.

    Model fields resolve their storage at import, before any fixture runs: the storages
    they use need an index that exists by then. Falls back to ``locmem://`` when no
    redis-server is installed.
    """
    port = os.environ.get(REDIS_PORT_VARIABLE)
    if not port:
        try:
            server = RedisServer().start()
        except RedisServerError:
            return "locmem://settings-redis"
        atexit.register(server.stop)
        port = str(server.port)
        os.environ[REDIS_PORT_VARIABLE] = port
    return f"redis://127.0.0.1:{port}/0"


def postgres_database() -> dict[str, object] | None:
    """Return a ``DATABASES`` entry for the suite's PostgreSQL, starting it if needed.

    Returns None when PostgreSQL is not installed (the PostgreSQL tests then skip with
    that reason; ``make test`` installs it).
    """
    port = os.environ.get(PORT_VARIABLE)
    if not port:
        try:
            server = PostgresServer().start()
        except PostgresServerError:
            return None
        atexit.register(server.stop)
        port = str(server.port)
        os.environ[PORT_VARIABLE] = port
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "postgres",
        "USER": "dedupstore",
        "PASSWORD": "",
        "HOST": "127.0.0.1",
        "PORT": port,
        "TEST": {"NAME": f"test_dedupstore_{os.getpid()}"},
    }
