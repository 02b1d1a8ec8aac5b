"""``trapsim serve``: the run loop in a thread, the API on uvicorn in the main thread.

The server binds its port before anything else (a port in use is a clear error,
exit 2, and no run directory is made), starts the run once it listens, and on
SIGTERM or SIGINT stops the run (everything released is flushed, the report
printed), closes the WebSocket clients with code 1001, ends the gRPC streams and exits.

With ``--redis`` every event also goes to Redis pub/sub (:mod:`trapsim.service.relay`);
``trapsim serve --follow URL`` (:func:`follow`) serves a replica from there, without
simulating (:mod:`trapsim.service.replica`).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import uvloop
from fastapi.middleware.cors import CORSMiddleware
from rich.console import Console

from trapsim.core.errors import ConfigError
from trapsim.service.api import Access, Served, create_app
from trapsim.service.config import RunConfig
from trapsim.service.guard import BURST, MAX_BODY, RATE, Guard
from trapsim.service.hub import Hub, Outbox, UvicornServer, start_serving, uvicorn_server
from trapsim.service.live import LiveState
from trapsim.service.relay import Relay
from trapsim.service.replica import Replica
from trapsim.service.rpc.server import RpcServer
from trapsim.service.runner import Runner, print_report
from trapsim.service.simulation import Simulation
from trapsim.service.tickpush import TickPush
from trapsim.store.base import Sink

TOKEN_VARIABLE = "TRAPSIM_API_TOKEN"


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
          ws_send_timeout: float = 2.0, rate_limit: float = RATE, rate_burst: int = BURST,
          max_body_bytes: int = MAX_BODY, ws_port: int | None = None, grpc_port: int = 0,
          grpc_queue_size: int = 10_000, redis_url: str | None = None,
          redis_prefix: str = "sim_") -> dict:
    """Serve ``sim`` (made ``live``) until a signal; returns the run's report.

    With ``redis_url``, every event also goes to Redis pub/sub under ``redis_prefix``
    (:class:`~trapsim.service.relay.Relay`) for replicas.

    Raises
    ------
    ConfigError
        If the port (or ``ws_port``, or the gRPC port unless 0) cannot be bound.
    """
    sock = listen(host, port)
    push_sock = listen(host, ws_port) if ws_port is not None else None
    rpc = RpcServer(host, grpc_port, cfg.specs, grpc_queue_size) if grpc_port else None
    hub = Hub(cfg.symbols, ws_queue_size, ws_send_timeout)
    push = TickPush({s: cfg.specs[s].decimals for s in cfg.symbols}, ws_queue_size,
                    ws_send_timeout, max_body_bytes) if ws_port is not None else None

    def deliver(messages: list[tuple[str, str | None, list[dict]]]) -> None:
        hub.publish_many(messages)
        for message in messages:
            if push is not None:
                push.publish(*message)
            if rpc is not None:
                rpc.feed.publish(*message)

    outbox = Outbox(deliver)  # a slice's messages leave together, when the run released it
    state = LiveState(cfg.symbols, outbox.publish,
                      lambda: bool(hub.clients) or bool(push is not None and push.clients)
                      or (rpc is not None and rpc.feed.listening()))
    relay = Relay(redis_url, prefix=redis_prefix, run_id=run_id,
                  paced=cfg.sleep > 0) if redis_url else None
    runner = Runner(cfg, out, console, (*sinks, state, *filter(None, [relay])), run_id, sim,
                    outbox.send)
    token = os.environ.get(TOKEN_VARIABLE) or None
    guard = {"rate": rate_limit, "burst": rate_burst, "max_body": max_body_bytes, "token": token}
    app = _guarded(create_app(Served(runner, state, hub, cfg.specs,
                                     Access(token, insecure_dev), time.monotonic())),
                   cors_origin, guard)
    server = uvicorn_server(app, max_body_bytes)
    console.print(f"run directory {out}  seed {cfg.seed}  run id {runner.run_id}",
                  highlight=False, soft_wrap=True)
    writes = "token" if token else ("open (--insecure-dev)" if insecure_dev else "off")
    console.print(f"serving http://{host}:{port}  (REST /api/v1, /chaos, WebSocket /ws, "
                  f"docs /docs; writes {writes})", highlight=False, soft_wrap=True)
    console.print(f"dashboard http://{host}:{port}/dashboard", highlight=False, soft_wrap=True)
    if push is not None:
        console.print(f"tick push ws://{host}:{ws_port}", highlight=False, soft_wrap=True)
    if rpc is not None:
        rpc.start(state)
        console.print(f"serving gRPC {rpc.address}  (trapsim.v1.PriceFeedService, "
                      "trapsim.v1.HistoricalDataService)", highlight=False, soft_wrap=True)
    if relay is not None:
        relay.start(runner, state, f"http://{host}:{port}")
        console.print(f"relaying every event to Redis channel {relay.keys.channel} "
                      "(replicas: trapsim serve --follow URL)", highlight=False, soft_wrap=True)
    result: dict = {}
    try:
        uvloop.run(_main(server, sock, hub, lambda: result.update(report=runner.run()),
                         runner.stop, result, push, push_sock))
    finally:
        if rpc is not None:
            rpc.stop()
        if relay is not None:
            relay.stop()
    if "error" in result:
        raise result["error"]
    print_report(result["report"], out_console)
    return result["report"]


def follow(url: str, prefix: str, console: Console, *, host: str, port: int,
           insecure_dev: bool, cors_origin: list[str] | None, ws_queue_size: int = 1000,
           ws_send_timeout: float = 2.0, rate_limit: float = RATE, rate_burst: int = BURST,
           max_body_bytes: int = MAX_BODY, ws_port: int | None = None, grpc_port: int = 0,
           grpc_queue_size: int = 10_000) -> None:
    """Serve, read-only, the run a primary publishes to Redis under ``prefix``, until a
    signal (``trapsim serve --follow URL``): the same REST and WebSocket answers,
    without simulating; writes answer 409. ``insecure_dev`` changes nothing here; gRPC
    (``grpc_port``, ``grpc_queue_size``) is the primary's and not served by a replica.

    Raises
    ------
    ConfigError
        If the port cannot be bound, the URL is malformed, Redis is unreachable, no
        primary publishes under ``prefix``, or ``ws_port`` is given (the primary pushes).
    """
    if ws_port is not None:
        raise ConfigError("--ws-port is the primary's tick push; a --follow replica serves "
                          "REST and /ws only")
    sock = listen(host, port)
    token = os.environ.get(TOKEN_VARIABLE) or None
    guard = {"rate": rate_limit, "burst": rate_burst, "max_body": max_body_bytes, "token": token}
    started = time.monotonic()
    current = _Current()

    def serve_state(state: LiveState) -> None:
        current.app = _guarded(create_app(Served(
            replica, state, replica.hub, replica.specs, Access(token, insecure_dev), started)),
            cors_origin, guard)

    try:
        replica = Replica(url, prefix, serve_state, ws_queue_size=ws_queue_size,
                          ws_send_timeout=ws_send_timeout)
        replica.sync()
    except BaseException:
        sock.close()
        raise
    meta = replica.meta
    console.print(f"following {replica.source} channel {replica.keys.channel}: run "
                  f"{meta['run_id']}  seed {meta['seed']}  symbols {','.join(meta['symbols'])}  "
                  f"(primary {meta['http']})", highlight=False, soft_wrap=True)
    console.print(f"serving http://{host}:{port}  (read-only replica: REST /api/v1, /chaos, "
                  "WebSocket /ws, docs /docs; writes go to the primary)", highlight=False,
                  soft_wrap=True)
    console.print(f"dashboard http://{host}:{port}/dashboard", highlight=False, soft_wrap=True)
    result: dict = {}
    uvloop.run(_main(uvicorn_server(current, max_body_bytes), sock, replica.hub, replica.follow,
                     replica.stop, result))
    if "error" in result:
        raise result["error"]


class _Current:
    """The ASGI app of a replica's current live state (a resync builds a new one)."""

    app = None

    async def __call__(self, scope, receive, send) -> None:
        await self.app(scope, receive, send)


def _guarded(app, cors_origin: list[str] | None, guard: dict):
    """``app`` behind the request guards (rate limit, body size) and CORS, if asked."""
    app.add_middleware(Guard, **guard)
    if cors_origin:
        app.add_middleware(CORSMiddleware, allow_origins=cors_origin, allow_methods=["*"],
                           allow_headers=["Authorization", "Content-Type"])
    return app


async def _main(server: UvicornServer, sock: socket.socket, hub: Hub, work: Callable[[], None],
                halt: Callable[[str], None], result: dict, push: TickPush | None = None,
                push_sock: socket.socket | None = None) -> None:
    """Serve on ``sock`` while ``work`` runs in a thread, until a signal: then ``halt(reason)``
    it, wait for it, close the WebSocket clients (1001) and stop; an error of ``work`` goes
    to ``result["error"]`` and stops the server."""
    loop = asyncio.get_running_loop()
    hub.loop = loop
    stop = asyncio.Event()
    reason = {"name": None}

    def on_signal(sig: signal.Signals) -> None:
        reason["name"] = sig.name
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            result["error"] = exc
            loop.call_soon_threadsafe(stop.set)

    serving = await start_serving(server, sock)
    if push is not None:
        await push.start(push_sock)
    thread = threading.Thread(target=run, name="trapsim-run", daemon=True)
    thread.start()
    await stop.wait()
    halt(reason["name"] or "error")
    await asyncio.to_thread(thread.join)
    await asyncio.gather(*(c.close(1001, "server shutting down") for c in list(hub.clients)))
    if push is not None:
        await push.stop()
    server.should_exit = True
    await serving
