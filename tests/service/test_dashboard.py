"""The dashboard at `/dashboard` in a real headless Chromium (Debian's `chromium`, driven by
Playwright) against a real `trapsim serve` process: it loads with no console error and no
failed request, its candles grow from the WebSocket, a scenario started from its form shows
as active. Screenshots are kept in `artifacts/dashboard/` at the repository root."""

import json
import re
from importlib.resources import files
from pathlib import Path

import numpy as np
import plotly
import pytest
from playwright.sync_api import sync_playwright

from tests.conftest import missing
from trapsim.core.schemas import TickBatch
from trapsim.core.time import MINUTE_NS, parse_ts
from trapsim.scenarios.chaos import Scenario, check, check_symbols
from trapsim.service.api import CHAOS, _request_model
from trapsim.service.live import LiveState

from .conftest import REPO
from .serving import TOKEN, Server, wait_market

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "artifacts" / "dashboard"
SYMBOLS = ("BTC-USD", "ETH-USD")
ALL = ("BTC-USD", "ETH-USD", "USDT-USD", "BTC-ETH", "BTC-USD-PERP")
WAIT_MS = 60_000
UNAUTHORISED = "a valid 'Authorization: Bearer <token>' header is needed"


class Watched:
    """A dashboard page and what it did: console errors, failed requests, answers >= 400,
    requests made and WebSocket frames received."""

    def __init__(self, page, url: str) -> None:
        self.page, self.url = page, url
        self.errors: list[str] = []
        self.failed: list[str] = []
        self.bad: list[str] = []
        self.requests: list[str] = []
        self.frames: list[dict] = []
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("requestfailed", lambda r: self.failed.append(f"{r.url}: {r.failure}"))
        page.on("response", lambda r: r.status >= 400 and self.bad.append(f"{r.status} {r.url}"))
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("websocket", lambda ws: ws.on("framereceived", self._frame))

    def _frame(self, payload) -> None:
        self.frames.append(json.loads(payload))

    def candles_x(self) -> list[str]:
        """The x values (UTC times) of the candlestick trace, read from plotly's ``gd.data``."""
        return self.page.evaluate("document.getElementById('candles').data[0].x")

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _plotly_time(iso: str) -> str:
    """An API time as the dashboard hands it to plotly (UTC wall clock, no zone)."""
    return iso.replace("T", " ").removesuffix("Z")


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        missing(f"{CHROMIUM} is missing (Debian package chromium; `make install` installs it)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-background-networking", "--disable-component-update", "--no-first-run"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("dashboard"), "--symbols", ",".join(SYMBOLS),
               "--sleep", "0.01", "--detect")
    yield s
    if s.proc.poll() is None:
        s.stop()


@pytest.fixture
def dashboard(browser, server):
    context = browser.new_context(viewport={"width": 1600, "height": 1200})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    watched = Watched(page, server.url)
    page.goto(server.url + "/dashboard")
    page.wait_for_function("() => { const gd = document.getElementById('candles');"
                           " return gd.data && gd.data[0].x.length > 0; }")
    yield watched
    context.close()


def test_the_page_loads_populated_with_no_errors(dashboard, server):
    page = dashboard.page
    page.wait_for_function("() => document.querySelectorAll('#ticks tbody tr').length > 5")
    page.wait_for_function("() => document.getElementById('st-ticks').textContent !== '–'")
    assert page.title() == "trapsim dashboard"
    assert page.eval_on_selector_all("#symbol option", "os => os.map(o => o.value)") == list(
        SYMBOLS)
    assert re.fullmatch(r"[\d,]+\.\d{2}", page.text_content("#st-price"))
    assert page.text_content("#st-regime") != "–"
    # served with --detect: the live score so far, as matched / detections and / labels,
    # once the first statistics snapshot (every 2 wall seconds) is out
    page.wait_for_function("() => / \\(\\d+\\/\\d+\\)$/.test("
                           "document.getElementById('st-precision').textContent)")
    assert re.fullmatch(r"(–|\d+\.\d %) \(\d+/\d+\)", page.text_content("#st-precision"))
    assert re.fullmatch(r"(–|\d+\.\d %) \(\d+/\d+\)", page.text_content("#st-recall"))
    kinds = page.evaluate("['timeline', 'heatmap', 'scatter3d'].map(id => "
                          "(document.getElementById(id).data || []).map(t => t.type))")
    assert "heatmap" in kinds[1] and "scatter" in kinds[0]
    trace_names = page.evaluate("document.getElementById('candles').data.map(t => t.name)")
    assert trace_names[1:] == ["injected trap", "detected trap"]
    dashboard.shot("loaded")
    assert dashboard.errors == [] and dashboard.failed == [] and dashboard.bad == []
    # everything, plotly.js included, came from the server itself: no CDN
    assert all(u.startswith((server.url, f"ws://127.0.0.1:{server.port}"))
               for u in dashboard.requests), dashboard.requests
    assert any(u.endswith("/dashboard/plotly.min.js") for u in dashboard.requests)


def test_the_candles_grow_from_the_websocket(dashboard, server):
    before = dashboard.candles_x()
    history = [u for u in dashboard.requests if "/history" in u]
    now = parse_ts(server.get("/health").json()["market_time"])
    wait_market(server, now + 3 * MINUTE_NS)
    dashboard.page.wait_for_function(
        "last => { const x = document.getElementById('candles').data[0].x;"
        " return x[x.length - 1] > last; }", arg=before[-1])
    after = dashboard.candles_x()
    # the completed candles the socket brought are on the chart, after the loaded ones
    pushed = [_plotly_time(r["ts"]) for f in dashboard.frames
              if f.get("channel") == "candles:1m" and f["symbol"] == "BTC-USD"
              for r in f["data"] if _plotly_time(r["ts"]) > before[-1]]
    assert pushed and set(pushed) <= set(after)
    assert after == sorted(after) and after[-1] > before[-1]
    assert [u for u in dashboard.requests if "/history" in u] == history  # no reload
    ticks = [f for f in dashboard.frames if f.get("channel") == "ticks"]
    assert ticks and {f["symbol"] for f in ticks} == {"BTC-USD"}
    dashboard.shot("live")
    assert dashboard.errors == [] and dashboard.failed == [] and dashboard.bad == []


def test_a_price_shock_started_from_the_form_shows_as_active(dashboard, server):
    page = dashboard.page
    page.select_option("#chaos-type", "price-shock")
    body = json.loads(page.input_value("#chaos-params"))
    assert body["symbol"] == "BTC-USD"
    page.fill("#chaos-token", TOKEN)
    page.click("#chaos-start")
    page.wait_for_function("() => /^started live-\\d+/.test("
                           "document.getElementById('chaos-message').textContent)")
    key = re.match(r"started (live-\d+)", page.text_content("#chaos-message"))[1]
    row = f"#scenarios tbody tr[data-id='{key}']"
    page.wait_for_function(f"() => {{ const r = document.querySelector(\"{row}\");"
                           " return r && r.cells[2].textContent === 'active'; }")
    assert page.text_content(f"{row} td:nth-child(2)") == "price_shock"
    assert page.text_content(f"{row} td:nth-child(4)") == "BTC-USD"
    active = {s["scenario_id"]: s for s in server.get("/chaos/active-scenarios").json()[
        "scenarios"]}
    assert active[key]["type"] == "price_shock" and active[key]["status"] == "active"
    assert page.evaluate("sessionStorage.getItem('trapsim-token')") == TOKEN
    dashboard.shot("scenario")
    assert dashboard.errors == [] and dashboard.failed == [] and dashboard.bad == []


def test_a_wrong_token_shows_the_401_detail(dashboard, server):
    page = dashboard.page
    before = server.get("/chaos/active-scenarios").json()["scenarios"]
    page.fill("#chaos-token", "wrong")
    page.click("#chaos-start")
    page.wait_for_function("() => document.getElementById('chaos-message').textContent"
                           ".startsWith('401')")
    assert page.text_content("#chaos-message") == f"401: {UNAUTHORISED}"
    assert page.get_attribute("#chaos-message", "class") == "error"
    assert server.get("/chaos/active-scenarios").json()["scenarios"] == before
    dashboard.shot("wrong-token")
    assert dashboard.bad == [f"401 {server.url}/chaos/price-shock"]
    assert all("401" in e for e in dashboard.errors)  # the browser's own note of the 401


def test_refusals_are_shown_as_text_never_as_markup(dashboard):
    page = dashboard.page
    page.fill("#chaos-token", TOKEN)
    page.fill("#chaos-params", '{"symbol": "<img src=x id=injected>", "shock_percentage": -5,'
              ' "duration_seconds": 60}')
    page.click("#chaos-start")
    page.wait_for_function("() => document.getElementById('chaos-message').textContent"
                           ".startsWith('422')")
    assert "needs <img src=x id=injected> in the run's symbols" in page.text_content(
        "#chaos-message")
    assert page.query_selector("#injected") is None
    page.fill("#chaos-params", "{not json")
    page.click("#chaos-start")
    page.wait_for_function("() => document.getElementById('chaos-message').textContent"
                           ".startsWith('parameters: not valid JSON')")


def test_every_prefilled_form_body_is_a_valid_phase(dashboard):
    page = dashboard.page
    kinds = page.eval_on_selector_all("#chaos-type option", "os => os.map(o => o.value)")
    assert sorted(kinds) == sorted(CHAOS)
    for kind in kinds:
        page.select_option("#chaos-type", kind)
        body = json.loads(page.input_value("#chaos-params"))
        cls = CHAOS[kind]
        _request_model(cls).model_validate(body)
        scenario = Scenario(phases=[cls(type=cls.model_fields["type"].annotation.__args__[0],
                                        at="0s", **body)])
        check(scenario)  # within the guard rails
        check_symbols(scenario, ALL)  # and playable on a run of every symbol


def test_the_files_are_the_servers_own_with_caching(server):
    r = server.get("/dashboard/plotly.min.js")
    shipped = files(plotly).joinpath("package_data", "plotly.min.js").read_bytes()
    assert r.status_code == 200 and r.content == shipped
    assert r.headers["content-type"].startswith("text/javascript")
    assert r.headers["content-encoding"] == "gzip"  # httpx asks for it and unpacks it
    assert "max-age=" in r.headers["cache-control"]
    again = server.get("/dashboard/plotly.min.js", headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304 and not again.content
    page = server.get("/dashboard")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-cache"
    assert "<title>trapsim dashboard</title>" in page.text
    assert "http" not in page.text.split("<body>")[0]  # no outside script or style
    for name in ("dashboard.js", "dashboard.css"):
        assert server.get(f"/dashboard/{name}").status_code == 200


def test_regime_changes_are_kept_once_per_change(server):
    names = ("calm", "bull", "bear")
    state = LiveState(("BTC-USD",))

    def batch(t0: int, codes: list[int]) -> TickBatch:
        n = len(codes)
        ts = (t0 + np.arange(n)) * 1_000_000_000
        one = np.ones(n)
        return TickBatch("BTC-USD", ts, one, one, one, one, np.array(codes, np.int8), names)

    state.ticks(batch(0, [0, 0, 1, 1, 0]))
    state.ticks(batch(5, [0, 2]))  # starts in the regime the last one ended in
    assert [(parse_ts(c["ts"]) // 1_000_000_000, c["regime"]) for c in
            state.regime_changes("BTC-USD")] == [(0, "calm"), (2, "bull"), (4, "calm"),
                                                 (6, "bear")]
    served = server.get("/api/v1/regimes/BTC-USD").json()["changes"]
    first = server.get("/api/v1/prices/BTC-USD/history", params={"interval": "1s"}).json()
    assert served[0]["ts"] == first["rows"][0]["ts"]  # the first tick's regime
    assert all(a["regime"] != b["regime"] for a, b in zip(served, served[1:], strict=False))
    assert server.get("/api/v1/regimes/XRP-USD").status_code == 404
