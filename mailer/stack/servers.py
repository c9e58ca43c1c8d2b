"""Re-exported for tests: the throwaway servers live in :mod:`mailer.stack.throwaway`."""

from mailer.stack.throwaway import (
    PostgresCluster,
    RedisServer,
    free_port,
    postgres_cluster,
    redis_server,
)

__all__ = ["PostgresCluster", "RedisServer", "free_port", "postgres_cluster", "redis_server"]
