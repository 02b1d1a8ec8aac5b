"""Loopback figures of `trapsim serve`: startup, REST latency at a fixed rate, WebSocket fan-out.

Prints, each against a baseline measured in the same run:

- **startup**: wall seconds from spawning `trapsim serve` to `/health` answering with a
  market time (median of 3; required < 5 s); baseline: the same for a bare uvicorn app
  that imports FastAPI and answers a constant;
- **REST**: `GET /api/v1/prices/BTC-USD/current` at 500 requests/s for 20 s, open loop
  over 8 keep-alive connections; each latency runs from the request's *scheduled* time,
  so a stall counts against every request it delays (no coordinated omission); p50,
  p99 (required < 5 ms), max; baseline: the same load on the bare app;
- **WebSocket**: 1,000 clients in 2 processes (a minimal reader each, see
  :class:`_Subscriber`), each subscribed to the ticks of the 5 symbols, with the run
  paced at 10 market seconds per wall second (`--sleep 0.1`: 50 k messages/s out) for
  20 s; delivery latency = receive time − the frame's `published_ns` (when the run
  released the tick): p50, p99 (required < 10 ms), max; messages per client, clients
  dropped as too slow (required 0), the server's peak RSS (required < 500 MB), CPU
  seconds of server and clients; baselines: one client alone on the same server, and
  the floor of the machine: a bare uvloop broadcaster (no framework, no simulation)
  writing the same five frames to as many of the same clients, 10 times a second, in
  one write per client.

Usage: .venv/bin/python benchmarks/bench_serve.py [--clients 1000] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx
import numpy as np
import orjson
import uvloop
from websockets.frames import Frame, Opcode

SYMBOLS = "BTC-USD,ETH-USD,USDT-USD,BTC-ETH,BTC-USD-PERP"
CLIENT_PROCESSES = 2
BARE_APP = textwrap.dedent("""
    from fastapi import FastAPI
    app = FastAPI()

    @app.get("/health")
    def health():
        return {"status": "ok", "market_time": "-"}

    @app.get("/api/v1/prices/BTC-USD/current")
    def current():
        return {"symbol": "BTC-USD", "price": "100000.00"}
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Process:
    """A server subprocess on a free port; ``up`` is the spawn-to-ready wall time."""

    def __init__(self, args: list[str], cwd: str | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        t = time.perf_counter()
        self.proc = subprocess.Popen([a.replace("{port}", str(self.port)) for a in args],
                                     cwd=cwd, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        while True:
            try:
                if httpx.get(self.url + "/health").json().get("market_time"):
                    break
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited: {args}")
            time.sleep(0.01)
        self.up = time.perf_counter() - t

    def rss_peak_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)


def serve(out: str, *extra: str) -> Process:
    return Process([sys.executable, "-m", "trapsim", "serve", "--port", "{port}",
                    "--symbols", SYMBOLS, "--out", f"{out}/run{time.monotonic_ns()}",
                    "--seed", "1", *extra])


def bare(tmp: str) -> Process:
    Path(tmp, "bare_app.py").write_text(BARE_APP)
    return Process([sys.executable, "-m", "uvicorn", "bare_app:app", "--port", "{port}",
                    "--log-level", "warning"], cwd=tmp)


async def _rest_load(url: str, rate: float, seconds: float) -> np.ndarray:
    """Latencies of GETs sent at ``rate``/s over 8 keep-alive HTTP/1.1 connections.

    A plain asyncio client (httpx costs more per request than the server under test);
    a request due while every connection is busy waits, and its wait counts.
    """
    host, port = url.removeprefix("http://").split(":")
    request = (f"GET /api/v1/prices/BTC-USD/current HTTP/1.1\r\nHost: {host}\r\n\r\n"
               ).encode()
    n = int(rate * seconds)
    lat = np.empty(n)
    due = asyncio.Queue()

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        while (job := await due.get()) is not None:
            i, when = job
            await asyncio.sleep(when - time.perf_counter())
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length"))
            body = await reader.readexactly(length)
            if not head.startswith(b"HTTP/1.1 200"):
                raise SystemExit(f"GET current answered {head[:40]!r} {body[:200]!r}")
            lat[i] = time.perf_counter() - when
        writer.close()

    t0 = time.perf_counter() + 0.2
    for i in range(n):
        due.put_nowait((i, t0 + i / rate))
    workers = [asyncio.create_task(connection()) for _ in range(8)]
    for _ in workers:
        due.put_nowait(None)
    await asyncio.gather(*workers)
    return lat


def rest_load(url: str, rate: float, seconds: float) -> np.ndarray:
    return asyncio.run(_rest_load(url, rate, seconds))


class _Subscriber(asyncio.Protocol):
    """A WebSocket client of the ticks channel that only reads, cheap enough that 1,000 of
    them leave the server a core: RFC 6455 framing read by hand (a server's frames are
    unmasked) and ``published_ns`` cut from the text, not parsed as JSON. Each frame's
    delivery latency = its arrival − its ``published_ns``."""

    def __init__(self, host: str, path: str, seconds: float, done: asyncio.Future) -> None:
        self.host, self.path, self.seconds, self.done = host, path, seconds, done
        self.buf = b""
        self.upgraded = False
        self.lat: list[int] = []  # ns

    def connection_made(self, transport) -> None:
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\n"
                        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                        .encode())

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        buf = self.buf + data if self.buf else data
        if not self.upgraded:
            head, sep, buf = buf.partition(b"\r\n\r\n")
            if not sep:
                self.buf = head
                return
            if not head.startswith(b"HTTP/1.1 101"):
                raise SystemExit(f"WebSocket handshake answered {head[:40]!r}")
            self.upgraded = True
            subscribe = json.dumps({"op": "subscribe", "channels": ["ticks"]}).encode()
            self.transport.write(Frame(Opcode.TEXT, subscribe).serialize(mask=True))
            asyncio.get_running_loop().call_later(self.seconds, self.stop)
        at, end = 0, len(buf)
        while end - at >= 2:
            n = buf[at + 1] & 0x7F
            head = 2 if n < 126 else 4 if n == 126 else 10
            if end - at < head:
                break
            if n >= 126:
                n = int.from_bytes(buf[at + 2:at + head], "big")
            if end - at < head + n:
                break
            opcode, start, at = buf[at] & 0x0F, at + head, at + head + n
            if opcode != 0x1:  # a ping
                continue
            key = buf.find(b'"published_ns":', start, at)
            if key < 0:
                self.answer(buf[start:at])
            else:
                self.lat.append(now - int(buf[key + 15:buf.index(b",", key + 15, at)]))
        self.buf = buf[at:]

    def answer(self, payload: bytes) -> None:
        if orjson.loads(payload).get("op") != "subscribed":
            raise SystemExit(f"subscribe answered {payload[:200]!r}")

    def stop(self) -> None:
        self.transport.close()
        self.connection_lost(None)

    def connection_lost(self, exc) -> None:
        if not self.done.done():
            self.done.set_result(self.lat)


async def _subscribers(url: str, n: int, seconds: float) -> list[list[int]]:
    host, _, path = url.removeprefix("ws://").partition("/")
    name, port = host.split(":")
    loop = asyncio.get_running_loop()
    done = [loop.create_future() for _ in range(n)]
    for d in done:
        await loop.create_connection(lambda d=d: _Subscriber(host, "/" + path, seconds, d),
                                     name, int(port))
    return list(await asyncio.gather(*done))


def _subscriber_process(url: str, n: int, seconds: float, out) -> None:
    t = time.process_time()
    got = uvloop.run(_subscribers(url, n, seconds))
    out.put((got, time.process_time() - t))


def ws_fanout(ws_url: str, clients: int, seconds: float) -> tuple[list[np.ndarray], float]:
    """Each client's latencies (s) and the CPU seconds the clients' processes used."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    k = min(clients, CLIENT_PROCESSES)
    procs = [ctx.Process(target=_subscriber_process,
                         args=(ws_url, clients // k + (i < clients % k), seconds, out))
             for i in range(k)]
    for p in procs:
        p.start()
    got = [out.get(timeout=seconds + 300) for _ in procs]
    for p in procs:
        p.join()
    return ([np.array(lat) / 1e9 for lats, _ in got for lat in lats],
            sum(cpu for _, cpu in got))


def _broadcaster(port, ready, seconds: float) -> None:
    """The bare floor of a fan-out: a uvloop server that accepts any WebSocket handshake
    and, 10 times a second, writes 5 ready-made tick frames to each client in one write."""
    async def main() -> None:
        clients: list = []
        row = {"ts": "2025-01-01T00:00:00Z", "price": 100000.0, "bid": 99999.5,
               "ask": 100000.5, "volume": 0.25, "regime": "high_volatility_bullish"}

        class Peer(asyncio.Protocol):
            def connection_made(self, transport) -> None:
                self.transport, self.buf = transport, b""

            def data_received(self, data: bytes) -> None:
                if self.buf is None:  # upgraded: what the client sends is not read
                    return
                self.buf += data
                if b"\r\n\r\n" in self.buf:
                    self.buf = None
                    self.transport.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: "
                                         b"websocket\r\nConnection: Upgrade\r\n\r\n")
                    self.transport.write(Frame(Opcode.TEXT, b'{"op":"subscribed"}').serialize(
                        mask=False))
                    clients.append(self.transport)

        loop = asyncio.get_running_loop()
        server = await loop.create_server(Peer, "127.0.0.1", 0)
        port.value = server.sockets[0].getsockname()[1]
        ready.set()
        while not clients:
            await asyncio.sleep(0.01)
        end = time.monotonic() + seconds + 5
        while time.monotonic() < end:
            now = time.time_ns()
            data = b"".join(Frame(Opcode.TEXT, orjson.dumps(
                {"channel": "ticks", "symbol": s, "published_ns": now, "data": [row]})).serialize(
                mask=False) for s in SYMBOLS.split(","))
            for t in clients:
                if not t.is_closing():
                    t.write(data)
            await asyncio.sleep(max(0.0, 0.1 - (time.time_ns() - now) / 1e9))

    uvloop.run(main())


def bare_fanout(clients: int, seconds: float) -> list[np.ndarray]:
    ctx = mp.get_context("spawn")
    port, ready = ctx.Value("i", 0), ctx.Event()
    p = ctx.Process(target=_broadcaster, args=(port, ready, seconds))
    p.start()
    ready.wait(30)
    lat, _ = ws_fanout(f"ws://127.0.0.1:{port.value}/ws", clients, seconds)
    p.kill()
    p.join()
    return lat


def pct(x: np.ndarray) -> str:
    return (f"p50 {np.percentile(x, 50) * 1e3:.2f} ms, p99 {np.percentile(x, 99) * 1e3:.2f} ms,"
            f" max {x.max() * 1e3:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env_token = {"TRAPSIM_API_TOKEN": "bench"}
        os.environ.update(env_token)
        ups, bare_ups = [], []
        for _ in range(3):
            s = serve(tmp, "--sleep", "0.1")
            ups.append(s.up)
            s.stop()
            b = bare(tmp)
            bare_ups.append(b.up)
            b.stop()
        up, base_up = float(np.median(ups)), float(np.median(bare_ups))
        print(f"startup to first market tick: {up:.2f} s median of 3 (required < 5 s); "
              f"bare uvicorn app {base_up:.2f} s; ratio {up / base_up:.1f}")

        b = bare(tmp)
        base = rest_load(b.url, 500, args.seconds)
        b.stop()
        s = serve(tmp, "--sleep", "0.1")
        lat = rest_load(s.url, 500, args.seconds)
        s.stop()
        print(f"REST current price at 500 req/s, {len(lat):,} requests: {pct(lat)} "
              f"(required p99 < 5 ms); bare app {pct(base)}; p99 ratio "
              f"{np.percentile(lat, 99) / np.percentile(base, 99):.2f}")

        s = serve(tmp, "--sleep", "0.1", "--ws-queue-size", "1000")
        ws_url = s.url.replace("http", "ws") + "/ws"
        alone, _ = ws_fanout(ws_url, 1, min(args.seconds, 10))
        cpu0 = s.cpu_seconds()
        per, client_cpu = ws_fanout(ws_url, args.clients, args.seconds)
        server_cpu = s.cpu_seconds() - cpu0
        metrics = httpx.get(s.url + "/api/metrics").json()["websocket"]
        rss = s.rss_peak_mb()
        s.stop()
        floor = np.concatenate(bare_fanout(args.clients, args.seconds))
        lat, alone = np.concatenate(per), np.concatenate(alone)
        counts = np.array([len(x) for x in per])
        print(f"WebSocket fan-out, {args.clients:,} clients x ticks of 5 symbols at 10 market "
              f"s per wall s: {len(lat) / args.seconds:,.0f} messages/s received, {pct(lat)} "
              f"(required p99 < 10 ms); messages per client min {counts.min()} max "
              f"{counts.max()}; dropped as too slow {metrics['dropped_slow']} (required 0); "
              f"server peak RSS {rss:.0f} MB (required < 500); CPU seconds: server "
              f"{server_cpu:.1f}, clients {client_cpu:.1f}")
        print(f"one client alone: {pct(alone)}; bare uvloop broadcaster of the same frames to "
              f"{args.clients:,} clients (the floor of this machine): {pct(floor)}; p99 ratio "
              f"to the floor {np.percentile(lat, 99) / np.percentile(floor, 99):.2f}")


if __name__ == "__main__":
    main()
