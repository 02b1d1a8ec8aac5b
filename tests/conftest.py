"""Services every test directory shares: Redis at ``TRAPSIM_TEST_REDIS`` (default
redis://127.0.0.1:6379/0). A test that needs a missing service is skipped, or fails when
``CI=true``."""

import os

import pytest
import redis

CI = os.environ.get("CI", "").lower() == "true"
REDIS_URL = os.environ.get("TRAPSIM_TEST_REDIS", "redis://127.0.0.1:6379/0")


def missing(what: str) -> None:
    """Skip the test, or fail it under CI where every service must be present."""
    if CI:
        pytest.fail(f"{what} (CI=true: every service the tests use must be present)")
    pytest.skip(what)


@pytest.fixture(scope="session")
def redis_url() -> str:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        missing(f"Redis at {REDIS_URL} unreachable: {exc}")
    return REDIS_URL
