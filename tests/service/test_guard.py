"""The request guards of a real `trapsim serve`: per-client rate limits (429 with Retry-After),
the request body and WebSocket message size limit (413, close 1009), and the tick push's
port (`--ws-port`: in use is exit 2, SIGTERM closes its clients with 1001)."""

import json
import socket

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from .conftest import trapsim
from .serving import AUTH, Server, free_port

LIMIT = 2000
"""--max-body-bytes of the server under test."""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    ws_port = free_port()
    # Three requests at once, then one every ten seconds: a client runs dry in a test.
    s = Server(tmp_path_factory.mktemp("guard"), "--sleep", "0.01", "--rate-limit", "0.1",
               "--rate-burst", "3", "--max-body-bytes", LIMIT, "--ws-port", ws_port)
    s.ws_port = ws_port
    yield s
    if s.proc.poll() is None:
        s.stop()


def client(address: str, **kw) -> httpx.Client:
    """An HTTP client from its own loopback address: a client of its own to the server."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=30, **kw)


def ws_from(address: str, url: str, **kw):
    """A WebSocket client connecting from ``address``."""
    host, port = url.split("//")[1].split("/")[0].split(":")
    sock = socket.create_connection((host, int(port)), source_address=(address, 0))
    return connect(url, sock=sock, **kw)


def test_a_client_over_its_rate_gets_429_with_retry_after(server):
    path = server.url + "/api/v1/prices/BTC-USD/current"
    with client("127.0.0.2") as one:
        codes = [one.get(path).status_code for _ in range(3)]
        refused = one.get(path)
        assert codes == [200, 200, 200] and refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 10
        assert "too many requests" in refused.json()["detail"] and "0.1/s" in refused.text
        assert one.get(server.url + "/health").status_code == 200  # probes are not limited
    with client("127.0.0.3") as other:
        assert other.get(path).status_code == 200  # a bucket of its own


def test_the_token_holder_is_one_client_wherever_it_connects_from(server):
    path = server.url + "/api/v1/orderbook/BTC-USD"
    with client("127.0.0.4", headers=AUTH) as here, client("127.0.0.5") as there:
        assert [here.get(path).status_code for _ in range(3)] == [200, 200, 200]
        assert there.get(path, headers=AUTH).status_code == 429
        assert there.get(path).status_code == 200  # without the token: its address's bucket
        made_up = {"Authorization": "Bearer not-the-token"}
        assert there.get(path, headers=made_up).status_code == 200  # no fresh bucket either
        assert there.get(path, headers=made_up).status_code == 200
        assert there.get(path, headers=made_up).status_code == 429


def test_a_large_body_is_413_before_it_is_read(server):
    body = json.dumps({"ticks": [{"symbol": "BTC-USD", "ts": "2025-01-06T00:00:00Z",
                                  "price": "1"}] * 40}).encode()
    assert len(body) > LIMIT
    with client("127.0.0.6") as c:
        r = c.post(server.url + "/ingest", content=body,
                   headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and f"larger than {LIMIT} bytes" in r.json()["detail"]
    with client("127.0.0.7") as c:  # no Content-Length: counted as it streams
        r = c.post(server.url + "/ingest", content=(body[i:i + 500] for i in range(
            0, len(body), 500)), headers={"Content-Type": "application/json"})
        assert "content-length" not in r.request.headers
        assert r.status_code == 413 and f"larger than {LIMIT} bytes" in r.json()["detail"]
    with client("127.0.0.8") as c:  # under it: on to the endpoint, which wants the token
        r = c.post(server.url + "/ingest", json={"ticks": [{"symbol": "BTC-USD", "price": 1,
                                                             "ts": "2025-01-06T00:00:00Z"}]})
        assert r.status_code == 401


@pytest.mark.parametrize("which", ["/ws", "tick push"])
def test_websocket_messages_are_bounded_too(server, which):
    url = (f"ws://127.0.0.1:{server.port}/ws" if which == "/ws"
           else f"ws://127.0.0.1:{server.ws_port}")
    with ws_from("127.0.0.9" if which == "/ws" else "127.0.0.10", url) as ws:
        ws.send(json.dumps({"op": "ping", "pad": "x" * LIMIT}))
        with pytest.raises(ConnectionClosed) as closed:
            for _ in range(100_000):  # the tick push sends ticks until it closes
                ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009  # message too big


def test_bad_guard_options_and_a_tick_port_in_use_are_exit_2(tmp_path):
    r = trapsim("serve", "--rate-limit", "-1", "--out", tmp_path / "a")
    assert r.returncode == 2 and "--rate-limit" in r.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = trapsim("serve", "--port", free_port(), "--ws-port", port, "--out", tmp_path / "b")
    assert r.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in r.stderr
    assert not (tmp_path / "b").exists()


def test_sigterm_closes_the_tick_push_with_1001(server):
    # Read in the background all along (no bound on what waits): not dropped as too slow.
    with connect(f"ws://127.0.0.1:{server.ws_port}", max_queue=None) as ws:
        assert json.loads(ws.recv(timeout=10))["status"] == "connected"
        code, _, err = server.stop()
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(timeout=30)
    assert code == 0, err
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.ws_port), timeout=5)
