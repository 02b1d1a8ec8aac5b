"""Services every test directory shares: Redis at ``TRAPSIM_TEST_REDIS`` (default
redis://127.0.0.1:6379/0) and a private ``redis-server`` a test may kill and restart. A test
that needs a missing service is skipped, or fails when ``CI=true``."""

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

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


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on (right now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateRedis:
    """A ``redis-server`` of one test, on its own port and directory, with AOF on every write."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.dir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.dir),
                "--appendonly", "yes",
                "--appendfsync", "always",
                "--save", "",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server on port {self.port} did not start") from None
                time.sleep(0.02)
            finally:
                client.close()

    def kill(self) -> None:
        """SIGKILL: no shutdown, whatever was fsynced to the AOF survives."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None


@pytest.fixture
def private_redis(tmp_path):
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.access(binary, os.X_OK):
        missing("redis-server binary not found")
    server = PrivateRedis(binary, tmp_path / "redis")
    server.dir.mkdir()
    server.start()
    yield server
    server.kill()
