"""Loopback figures of `trapsim serve`: startup, REST latency at a fixed rate, WebSocket fan-out.

Prints, each against a baseline measured in the same run:

- **startup**: wall seconds from spawning `trapsim serve` to `/health` answering with a
  market time (median of 3; required < 5 s); baseline: the same for a bare uvicorn app
  that imports FastAPI and answers a constant;
- **REST**: `GET /api/v1/prices/BTC-USD/current` at 500 requests/s for 20 s, open loop
  over 8 keep-alive connections; each latency runs from the request's *scheduled* time,
  so a stall counts against every request it delays (no coordinated omission); p50,
  p99 (required < 5 ms), max; baseline: the same load on the bare app;
- **WebSocket**: 1,000 clients in 2 processes, each subscribed to the ticks of the 5
  symbols, with the run paced at 10 market seconds per wall second (`--sleep 0.1`:
  50 k messages/s out) for 20 s; delivery latency = receive time − the frame's
  `published_ns` (when the run released the tick): p50, p99 (required < 10 ms), max;
  messages per client, clients dropped as too slow (required 0), the server's peak RSS
  (required < 500 MB); baseline: one client alone on the same server.

Usage: .venv/bin/python benchmarks/bench_serve.py [--clients 1000] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
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
from websockets.asyncio.client import connect

SYMBOLS = "BTC-USD,ETH-USD,USDT-USD,BTC-ETH,BTC-USD-PERP"
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


async def _subscribers(url: str, n: int, seconds: float) -> list[list[float]]:
    async def one() -> list[float]:
        lat: list[float] = []
        async with connect(url, max_queue=None, ping_interval=None) as ws:
            await ws.send(json.dumps({"op": "subscribe", "channels": ["ticks"]}))
            await ws.recv()
            end = time.monotonic() + seconds
            while (left := end - time.monotonic()) > 0:
                try:
                    frame = await asyncio.wait_for(ws.recv(), left)
                except TimeoutError:
                    break
                now = time.time_ns()
                lat.append((now - json.loads(frame)["published_ns"]) / 1e9)
        return lat

    return list(await asyncio.gather(*(one() for _ in range(n))))


def _subscriber_process(url: str, n: int, seconds: float, out) -> None:
    out.put(asyncio.run(_subscribers(url, n, seconds)))


def ws_fanout(ws_url: str, clients: int, seconds: float) -> list[list[float]]:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    sizes = [clients // 2, clients - clients // 2] if clients > 1 else [1]
    procs = [ctx.Process(target=_subscriber_process, args=(ws_url, k, seconds, out))
             for k in sizes]
    for p in procs:
        p.start()
    got = [lat for _ in procs for lat in out.get(timeout=seconds + 300)]
    for p in procs:
        p.join()
    return got


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
        alone = np.concatenate(ws_fanout(ws_url, 1, min(args.seconds, 10)))
        per = ws_fanout(ws_url, args.clients, args.seconds)
        metrics = httpx.get(s.url + "/api/metrics").json()["websocket"]
        rss = s.rss_peak_mb()
        s.stop()
        lat = np.concatenate(per)
        counts = np.array([len(x) for x in per])
        print(f"WebSocket fan-out, {args.clients:,} clients x ticks of 5 symbols at 10 market "
              f"s per wall s: {len(lat) / args.seconds:,.0f} messages/s received, {pct(lat)} "
              f"(required p99 < 10 ms); messages per client min {counts.min()} max "
              f"{counts.max()}; dropped as too slow {metrics['dropped_slow']} (required 0); "
              f"server peak RSS {rss:.0f} MB (required < 500)")
        print(f"one client alone: {pct(alone)}; p99 ratio "
              f"{np.percentile(lat, 99) / np.percentile(alone, 99):.1f}")


if __name__ == "__main__":
    main()
