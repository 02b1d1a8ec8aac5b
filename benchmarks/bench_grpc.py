"""gRPC of ``trapsim serve`` against its REST and WebSocket twins, on one server process.

Starts ``trapsim serve`` (five symbols, ``--sleep`` default 0.002: 2,500 ticks per
wall second) on free ports and prints, alternating the two sides ``--repeat``
times so machine load hits both alike:

- unary calls per second of ``GetCurrentPrice`` against ``GET
  /api/v1/prices/BTC-USD/current`` (one client, sequential calls; the baseline is REST),
  and their ratio;
- price updates received per second by a ``SubscribePrices`` stream of every symbol
  against tick rows received by a WebSocket ``ticks`` subscription (one after the
  other, ``--seconds`` each, so the client's own reading does not compete), and their
  ratio (1 when both keep up with the run).

Usage: .venv/bin/python benchmarks/bench_grpc.py [--calls 500] [--seconds 5] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from statistics import median

import grpc
import httpx
from websockets.sync.client import connect

from trapsim.service.rpc import price_feed_pb2 as pf
from trapsim.service.rpc import price_feed_pb2_grpc as pf_grpc

SYMBOLS = "BTC-USD,ETH-USD,USDT-USD,BTC-ETH,BTC-USD-PERP"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unary(calls: int, grpc_stub, http: httpx.Client) -> tuple[float, float]:
    """Calls per second of gRPC and of REST, ``calls`` each."""
    t = time.perf_counter()
    for _ in range(calls):
        grpc_stub.GetCurrentPrice(pf.PriceRequest(symbol="BTC-USD"))
    g = calls / (time.perf_counter() - t)
    t = time.perf_counter()
    for _ in range(calls):
        http.get("/api/v1/prices/BTC-USD/current").raise_for_status()
    return g, calls / (time.perf_counter() - t)


def stream_rates(seconds: float, grpc_stub, ws_url: str) -> tuple[float, float]:
    """Updates per second a gRPC stream, then a WebSocket, receive over ``seconds`` each."""
    call = grpc_stub.SubscribePrices(pf.SubscribeRequest())
    next(call)
    n, t = 0, time.perf_counter()
    try:
        while time.perf_counter() - t < seconds:
            next(call)
            n += 1
    except grpc.RpcError as err:  # RESOURCE_EXHAUSTED: this client fell too far behind
        print(f"  the gRPC stream was ended: {err.code().name} after {n} updates")
    g = n / (time.perf_counter() - t)
    call.cancel()
    with connect(ws_url) as ws:
        ws.send(json.dumps({"op": "subscribe", "channels": ["ticks"]}))
        ws.recv(timeout=30)
        n, t = 0, time.perf_counter()
        while time.perf_counter() - t < seconds:
            n += len(json.loads(ws.recv(timeout=30))["data"])
        return g, n / (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sleep", type=float, default=0.002)
    args = parser.parse_args()
    port, grpc_port = free_port(), free_port()
    env = {**os.environ, "TRAPSIM_API_TOKEN": "bench"}
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [sys.executable, "-m", "trapsim", "serve", "--port", str(port), "--grpc-port",
             str(grpc_port), "--symbols", SYMBOLS, "--sleep", str(args.sleep), "--seed", "7",
             "--out", f"{tmp}/run"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=env)
        try:
            http = httpx.Client(base_url=f"http://127.0.0.1:{port}")
            deadline = time.monotonic() + 120
            while True:
                try:
                    if http.get("/health").json()["market_time"]:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("the server did not start")
                time.sleep(0.1)
            channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
            stub = pf_grpc.PriceFeedServiceStub(channel)
            unary(20, stub, http)  # warm both paths
            calls, rates = [], []
            for _ in range(args.repeat):
                calls.append(unary(args.calls, stub, http))
                rates.append(stream_rates(args.seconds, stub, f"ws://127.0.0.1:{port}/ws"))
            g, r = median(c[0] for c in calls), median(c[1] for c in calls)
            print(f"GetCurrentPrice   {g:8.0f} calls/s   REST current {r:8.0f} calls/s   "
                  f"ratio {g / r:.2f}")
            g, w = median(c[0] for c in rates), median(c[1] for c in rates)
            print(f"SubscribePrices   {g:8.0f} updates/s  WebSocket     {w:8.0f} ticks/s   "
                  f"ratio {g / w:.2f}   (run publishes {5 / args.sleep:.0f}/s)")
            channel.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)


if __name__ == "__main__":
    main()
