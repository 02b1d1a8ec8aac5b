"""A `trapsim serve` process for tests: a free port, a token, the market clock."""

import os
import signal
import subprocess
import sys
import time

import httpx

from tests.conftest import free_port
from trapsim.core.time import parse_ts

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def wait_market(server, ts: int) -> None:
    """Wait until the served market time reaches ``ts`` (ns): a loaded machine paces late."""
    deadline = time.monotonic() + 60
    while parse_ts(server.get("/health").json()["market_time"]) < ts:
        assert time.monotonic() < deadline, "the market clock did not get there"
        time.sleep(0.05)


class Server:
    """A `trapsim serve` process and its base URL (a replica with ``follow``, a Redis URL)."""

    def __init__(self, tmp_path, *args, token: str | None = TOKEN, follow: str | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if k != "TRAPSIM_API_TOKEN"}
        if token:
            env["TRAPSIM_API_TOKEN"] = token
        self.out = tmp_path / f"run{self.port}"
        # gRPC only when a test asks for it: its default port cannot serve every test at once.
        rpc = () if "--grpc-port" in map(str, args) else ("--grpc-port", "0")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "trapsim", "serve", "--port", str(self.port),
             *(("--follow", follow) if follow else ("--out", str(self.out), "--seed", "4")),
             *rpc, *map(str, args)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        deadline = time.monotonic() + 120  # a first start compiles the market (numba)
        while True:
            try:
                if httpx.get(self.url + "/health").json()["market_time"]:
                    break
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()  # still running: what it wrote can only be read once it ends
                raise AssertionError(f"server did not start: {self.proc.communicate()}")
            time.sleep(0.05)

    def get(self, path, **kw):
        return httpx.get(self.url + path, **kw)

    def post(self, path, **kw):
        return httpx.post(self.url + path, **kw)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=60)
        return self.proc.returncode, out, err
