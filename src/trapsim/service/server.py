"""``trapsim serve``: the run loop in a thread, the API on uvicorn in the main thread.

The server binds its port before anything else (a port in use is a clear error,
exit 2, and no run directory is made), starts the run once it listens, and on
SIGTERM or SIGINT stops the run (everything released is flushed, the report
printed), closes the WebSocket clients with code 1001, ends the gRPC streams and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import threading
import time
from pathlib import Path

import uvicorn
from fastapi.middleware.cors import CORSMiddleware
from rich.console import Console

from trapsim.core.errors import ConfigError
from trapsim.service.api import Access, Served, create_app
from trapsim.service.config import RunConfig
from trapsim.service.hub import Hub
from trapsim.service.live import LiveState
from trapsim.service.rpc.server import RpcServer
from trapsim.service.runner import Runner, print_report
from trapsim.service.simulation import Simulation
from trapsim.store.base import Sink

TOKEN_VARIABLE = "TRAPSIM_API_TOKEN"


class _Server(uvicorn.Server):
    """Uvicorn without its own signal handling (it would re-raise SIGTERM at exit)."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``.

    Raises
    ------
    ConfigError
        If the address cannot be bound (in use, not local).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {err.strerror}") from None
    # Accepted connections inherit it: without, a response written in two parts waits for
    # the client's delayed ACK (about 40 ms a request).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def serve(cfg: RunConfig, out: Path, console: Console, out_console: Console,
          sinks: tuple[Sink, ...], run_id: str, sim: Simulation, *, host: str, port: int,
          insecure_dev: bool, cors_origin: list[str] | None, ws_queue_size: int = 1000,
          ws_send_timeout: float = 2.0, grpc_port: int = 0, grpc_queue_size: int = 10_000,
          ) -> dict:
    """Serve ``sim`` (made ``live``) until a signal; returns the run's report.

    Raises
    ------
    ConfigError
        If the port (or the gRPC port, unless 0) cannot be bound.
    """
    sock = listen(host, port)
    rpc = None
    if grpc_port:
        rpc = RpcServer(host, grpc_port, cfg.specs, grpc_queue_size)
    hub = Hub(cfg.symbols, ws_queue_size, ws_send_timeout)

    def publish(channel: str, symbol: str | None, rows: list[dict]) -> None:
        hub.publish(channel, symbol, rows)
        if rpc is not None:
            rpc.feed.publish(channel, symbol, rows)

    state = LiveState(cfg.symbols, publish,
                      lambda: bool(hub.clients) or (rpc is not None and rpc.feed.listening()))
    runner = Runner(cfg, out, console, (*sinks, state), run_id, sim)
    token = os.environ.get(TOKEN_VARIABLE) or None
    app = create_app(Served(runner, state, hub, cfg.specs, Access(token, insecure_dev),
                            time.monotonic()))
    if cors_origin:
        app.add_middleware(CORSMiddleware, allow_origins=cors_origin, allow_methods=["*"],
                           allow_headers=["Authorization", "Content-Type"])
    server = _Server(uvicorn.Config(app, log_level="warning", access_log=False,
                                    ws_per_message_deflate=False, lifespan="off"))
    console.print(f"run directory {out}  seed {cfg.seed}  run id {runner.run_id}",
                  highlight=False, soft_wrap=True)
    writes = "token" if token else ("open (--insecure-dev)" if insecure_dev else "off")
    console.print(f"serving http://{host}:{port}  (REST /api/v1, /chaos, WebSocket /ws, "
                  f"docs /docs; writes {writes})", highlight=False, soft_wrap=True)
    if rpc is not None:
        rpc.start(state)
        console.print(f"serving gRPC {rpc.address}  (trapsim.v1.PriceFeedService, "
                      "trapsim.v1.HistoricalDataService)", highlight=False, soft_wrap=True)
    result: dict = {}
    try:
        asyncio.run(_main(server, sock, runner, hub, result))
    finally:
        if rpc is not None:
            rpc.stop()
    if "error" in result:
        raise result["error"]
    print_report(result["report"], out_console)
    return result["report"]


async def _main(server: _Server, sock: socket.socket, runner: Runner, hub: Hub,
                result: dict) -> None:
    loop = asyncio.get_running_loop()
    hub.loop = loop
    stop = asyncio.Event()
    reason = {"name": None}

    def on_signal(sig: signal.Signals) -> None:
        reason["name"] = sig.name
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)

    def work() -> None:
        try:
            result["report"] = runner.run()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            result["error"] = exc
            loop.call_soon_threadsafe(stop.set)

    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not serving.done():
        await asyncio.sleep(0.005)
    thread = threading.Thread(target=work, name="trapsim-run", daemon=True)
    thread.start()
    await stop.wait()
    runner.stop(reason["name"] or "error")
    await asyncio.to_thread(thread.join)
    await asyncio.gather(*(c.close(1001, "server shutting down") for c in list(hub.clients)))
    server.should_exit = True
    await serving
