// The trapsim dashboard: the REST API gives the initial state, the WebSocket /ws the live
// updates (ticks, candles, traps, detections, HF mode, chaos, alerts, the run's end); the
// stats, regimes and chaos scenarios are read again every POLL_MS. Plain JS, no build step;
// text goes into the page through textContent only, and through esc() into plotly labels.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const INTERVAL_MS = { "1m": 60e3, "5m": 300e3, "15m": 900e3, "1h": 3600e3 };
  const MAX_CANDLES = 600;   // candles drawn
  const KEEP_ROWS = 5000;    // traps, detections and events kept (as the server keeps)
  const TICK_ROWS = 24;      // rows of the tick log
  const POLL_MS = 2000;      // the server refreshes its statistics every 2 s
  const DRAW_MS = 500;       // charts are redrawn at most this often
  const TOKEN_KEY = "trapsim-token";
  const TYPE_COLOURS = {
    liquidity_grab: "#4da3ff", stop_hunt: "#ffb74d", bull_trap: "#26a69a",
    bear_trap: "#ef5350", fibonacci_trap: "#ba68c8",
  };
  const REGIME_COLOURS = {
    low_volatility_neutral: "#607d8b", moderate_volatility_bullish: "#2e7d32",
    moderate_volatility_bearish: "#b71c1c", high_volatility_bullish: "#76ff03",
    high_volatility_bearish: "#ff6d00",
  };
  const SPARE_COLOURS = ["#90a4ae", "#f06292", "#aed581", "#fff176", "#4dd0e1"];
  const FONT = { color: "#d8dee6", size: 11 };
  const GRID = "#2a333d";

  const state = {
    symbols: [], headline: null, symbol: null, interval: "1m", decimals: 2,
    candles: [],      // {t (ms), o, h, l, c, v}, oldest first
    traps: [],        // injected trap labels, every symbol
    detections: [],   // the live detector's detections (headline symbol)
    chaos: [],        // chaos labels: {symbol, type, start, end}
    alerts: [],       // publication alerts
    regimes: [],      // {t, regime} changes of the selected symbol
    scenarios: [], metrics: null, ticks: [], last: null, previous: null,
    hf: { active: false }, ended: false, ws: null, retry: 0, loading: 0,
    defaultParams: "", dirty: new Set(),
  };

  // -- helpers --------------------------------------------------------------------------
  const ms = (iso) => Date.parse(iso);
  // plotly has no time zones: it is handed UTC wall-clock text and labels it UTC
  const px = (t) => new Date(t).toISOString().slice(0, 19).replace("T", " ");
  const hhmmss = (t) => new Date(t).toISOString().slice(11, 19);
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  const num = (x, d) => Number(x).toLocaleString("en-US",
    { minimumFractionDigits: d, maximumFractionDigits: d });
  const pct = (x) => (x === null || x === undefined ? "–" : `${(100 * x).toFixed(1)} %`);
  const colour = (map, key) => map[key] ||
    SPARE_COLOURS[[...String(key)].reduce((a, ch) => a + ch.charCodeAt(0), 0) %
      SPARE_COLOURS.length];
  const keep = (list) => list.splice(0, Math.max(0, list.length - KEEP_ROWS));
  const mark = (...what) => what.forEach((w) => state.dirty.add(w));

  async function getJSON(path) {
    const r = await fetch(path, { cache: "no-store" });
    if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
    return r.json();
  }

  function detailOf(body, status) {
    const d = body && body.detail;
    if (typeof d === "string") return d;
    if (Array.isArray(d)) {
      return d.map((e) => `${(e.loc || []).filter((p) => p !== "body").join(".")}: ${e.msg}`)
        .join("; ");
    }
    return `HTTP ${status}`;
  }

  function row(tbody, cells) {
    const tr = document.createElement("tr");
    for (const [text, cls] of cells) {
      const td = document.createElement("td");
      td.textContent = text;
      if (cls) td.className = cls;
      tr.appendChild(td);
    }
    tbody.appendChild(tr);
    return tr;
  }

  function candleAt(t) {
    // the candle holding time t (binary search), or null outside the kept ones
    const c = state.candles, span = INTERVAL_MS[state.interval];
    let lo = 0, hi = c.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (c[mid].t > t) hi = mid - 1;
      else if (c[mid].t + span <= t) lo = mid + 1;
      else return c[mid];
    }
    return null;
  }

  // -- state from the API and the WebSocket ----------------------------------------------
  const candleOf = (r) => ({ t: ms(r.ts), o: +r.open, h: +r.high, l: +r.low, c: +r.close,
    v: +r.volume });
  const chaosOf = (lb) => ({ symbol: lb.symbol, type: lb.type, start: ms(lb.ts || lb.start_ts),
    end: ms(lb.end_ts), id: lb.id });

  function upsertCandle(k) {
    const c = state.candles;
    let i = c.length - 1;
    while (i >= 0 && c[i].t > k.t) i--;
    if (i >= 0 && c[i].t === k.t) c[i] = k;
    else c.splice(i + 1, 0, k);
    if (c.length > MAX_CANDLES) c.splice(0, c.length - MAX_CANDLES);
  }

  function addTick(r) {
    const t = ms(r.ts), p = +r.price, span = INTERVAL_MS[state.interval];
    const start = Math.floor(t / span) * span, c = state.candles, last = c[c.length - 1];
    // the forming candle, until the server's completed one replaces it
    if (!last || start > last.t) upsertCandle({ t: start, o: p, h: p, l: p, c: p, v: +r.volume });
    else if (start === last.t) {
      last.h = Math.max(last.h, p); last.l = Math.min(last.l, p); last.c = p;
      last.v += +r.volume;
    }
    state.previous = state.last ? state.last.price : null;
    state.last = { t, price: p };
    state.ticks.unshift(r);
    state.ticks.length = Math.min(state.ticks.length, TICK_ROWS);
  }

  function onFrame(msg) {
    if (msg.op) {
      if (msg.op === "error") $("conn").title = msg.detail;
      return;
    }
    const rows = msg.data || [];
    if (msg.channel === "ticks" && msg.symbol === state.symbol) {
      rows.forEach(addTick);
      mark("candles", "ticks", "stats");
    } else if (msg.channel === `candles:${state.interval}` && msg.symbol === state.symbol) {
      rows.forEach((r) => upsertCandle(candleOf(r)));
      mark("candles");
    } else if (msg.channel === "traps") {
      state.traps.push(...rows); keep(state.traps);
      mark("traps");
    } else if (msg.channel === "detections") {
      state.detections.push(...rows); keep(state.detections);
      mark("traps", "stats");
    } else if (msg.channel === "chaos") {
      state.chaos.push(...rows.map(chaosOf)); keep(state.chaos);
      mark("traps", "candles");
      poll();
    } else if (msg.channel === "alerts") {
      state.alerts.push(...rows); keep(state.alerts);
      mark("traps");
    } else if (msg.channel === "hf") {
      for (const e of rows) state.hf = { active: e.event === "hf_on", since: e.ts };
      mark("stats");
    } else if (msg.channel === "status" && rows.some((r) => r.event === "ended")) {
      state.ended = true;
      setConn("run ended", "off");
    }
  }

  async function load() {
    // everything of the selected symbol and interval, as the API has it now
    const symbol = state.symbol, interval = state.interval, gen = ++state.loading;
    const path = encodeURIComponent(symbol);
    const [hist, injected, detected, timeline, regimes] = await Promise.all([
      getJSON(`/api/v1/prices/${path}/history?interval=${interval}`),
      getJSON("/api/traps?source=injected"),
      getJSON("/api/traps?source=detected"),
      getJSON("/api/timeline"),
      getJSON(`/api/v1/regimes/${path}`),
    ]);
    if (gen !== state.loading) return;  // a newer load was asked for meanwhile
    const rows = hist.rows.map(candleOf);
    const lastT = rows.length ? rows[rows.length - 1].t : -Infinity;
    // candles the WebSocket brought while the history was on its way stay
    state.candles = [...rows, ...state.candles.filter((k) => k.t > lastT)].slice(-MAX_CANDLES);
    if (hist.rows.length) state.decimals = (hist.rows[0].close.split(".")[1] || "").length;
    state.traps = injected.traps;
    state.detections = detected.traps;
    state.chaos = timeline.events.filter((e) => e.kind === "chaos").map(chaosOf);
    state.alerts = timeline.events.filter((e) => e.kind === "alert");
    state.regimes = regimes.changes.map((r) => ({ t: ms(r.ts), regime: r.regime }));
    mark("candles", "traps", "stats", "ticks");
  }

  let polling = false;
  async function poll() {
    if (polling) return;
    polling = true;
    try {
      const path = encodeURIComponent(state.symbol);
      const [metrics, active, regimes] = await Promise.all([
        getJSON("/api/metrics"), getJSON("/chaos/active-scenarios"),
        getJSON(`/api/v1/regimes/${path}`),
      ]);
      state.metrics = metrics;
      state.hf = metrics.hf;
      if (JSON.stringify(active.scenarios) !== JSON.stringify(state.scenarios)) {
        state.scenarios = active.scenarios;
        mark("timeline");
      }
      if (regimes.symbol === state.symbol) {
        state.regimes = regimes.changes.map((r) => ({ t: ms(r.ts), regime: r.regime }));
      }
      mark("stats", "scenarios", "candles");
    } catch (err) {
      $("conn").title = String(err);
    } finally {
      polling = false;
    }
  }

  function setConn(text, cls) {
    const el = $("conn");
    el.textContent = text;
    el.className = `badge ${cls}`;
  }

  function send(obj) {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(obj));
  }

  function subscribeSymbol() {
    send({ op: "subscribe", channels: ["ticks", `candles:${state.interval}`],
      symbols: [state.symbol] });
  }

  function connect() {
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
    state.ws = ws;
    ws.onopen = () => {
      setConn("live", "live");
      send({ op: "subscribe", channels: ["traps", "detections", "hf", "chaos", "alerts",
        "status"] });
      subscribeSymbol();
      if (state.retry) load().catch(showError);  // frames were missed while away
      state.retry = 0;
    };
    ws.onmessage = (e) => onFrame(JSON.parse(e.data));
    ws.onclose = () => {
      state.ws = null;
      if (state.ended) return;
      setConn("reconnecting", "off");
      state.retry += 1;
      setTimeout(connect, Math.min(10_000, 500 * 2 ** state.retry));
    };
  }

  function showError(err) {
    setConn("error", "on");
    $("conn").title = String(err);
  }

  // -- drawing ----------------------------------------------------------------------------
  const base = (extra) => ({
    paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)", font: FONT,
    margin: { l: 50, r: 10, t: 10, b: 30 }, showlegend: true,
    legend: { orientation: "h", y: 1.02, yanchor: "bottom", x: 0, font: { size: 10 } },
    ...extra,
  });
  const CONFIG = { displaylogo: false, responsive: true };
  const empty = (text) => [{ text, showarrow: false, xref: "paper", yref: "paper", x: 0.5,
    y: 0.5, font: { color: "#8a96a3", size: 13 } }];
  const HEAT = [[0, "#1c232b"], [1e-9, "#4a2c17"], [0.5, "#ff9800"], [1, "#ff1744"]];
  const symbolTraps = () => state.traps.filter((lb) => lb.symbol === state.symbol);
  const symbolDetections = () => (state.symbol === state.headline ? state.detections : []);

  function chaosSpans() {
    // chaos phases on the selected symbol: the scenarios live now (their labels are
    // written when they end) and the labels of those that ended
    const spans = state.scenarios.filter((s) => s.start_ts && s.symbols.includes(state.symbol))
      .map((s) => ({ type: s.type, start: ms(s.start_ts), end: ms(s.end_ts) }));
    const live = new Set(spans.map((s) => `${s.type} ${s.start}`));
    return spans.concat(state.chaos.filter((ph) => ph.symbol === state.symbol &&
      !live.has(`${ph.type} ${ph.start}`)));
  }

  function drawCandles() {
    const c = state.candles, span = INTERVAL_MS[state.interval];
    if (!c.length) return;
    const first = c[0].t, end = c[c.length - 1].t + span;
    const traces = [{
      type: "candlestick", name: state.symbol, x: c.map((k) => px(k.t)),
      open: c.map((k) => k.o), high: c.map((k) => k.h), low: c.map((k) => k.l),
      close: c.map((k) => k.c), showlegend: false,
      increasing: { line: { color: "#26a69a" } }, decreasing: { line: { color: "#ef5350" } },
    }];
    const injected = symbolTraps().map((lb) => [lb, candleAt(ms(lb.peak_ts))])
      .filter(([, k]) => k);
    traces.push({
      type: "scatter", mode: "markers", name: "injected trap",
      x: injected.map(([lb]) => px(ms(lb.peak_ts))),
      y: injected.map(([lb, k]) => (lb.direction === "down" ? k.l : k.h)),
      marker: {
        size: 13, line: { color: "#fff", width: 1 },
        symbol: injected.map(([lb]) => (lb.direction === "down" ? "triangle-down" : "triangle-up")),
        color: injected.map(([lb]) => colour(TYPE_COLOURS, lb.type)),
      },
      text: injected.map(([lb]) => `${esc(lb.type)} #${esc(lb.id)} ${esc(lb.direction)}` +
        `<br>magnitude ${(+lb.magnitude).toFixed(2)} σ`),
      hoverinfo: "text+x",
    });
    const detected = symbolDetections().map((d) => [d, candleAt(ms(d.detected_at))])
      .filter(([, k]) => k);
    traces.push({
      type: "scatter", mode: "markers", name: "detected trap",
      x: detected.map(([d]) => px(ms(d.detected_at))), y: detected.map(([, k]) => k.c),
      marker: {
        symbol: "diamond", line: { color: "#000", width: 1 },
        size: detected.map(([d]) => 7 + 10 * d.confidence),
        color: detected.map(([d]) => colour(TYPE_COLOURS, d.trap_type)),
      },
      text: detected.map(([d]) => `detected ${esc(d.trap_type)} ${esc(d.direction)}` +
        `<br>confidence ${(+d.confidence).toFixed(2)}`),
      hoverinfo: "text+x",
    });
    const shapes = [];
    state.regimes.forEach((r, i) => {
      const next = i + 1 < state.regimes.length ? state.regimes[i + 1].t : end;
      if (next <= first) return;
      shapes.push({
        type: "rect", xref: "x", yref: "paper", x0: px(Math.max(r.t, first)), x1: px(next),
        y0: 0, y1: 0.045, line: { width: 0 }, fillcolor: colour(REGIME_COLOURS, r.regime),
      });
    });
    for (const ph of chaosSpans()) {
      if (ph.end <= first) continue;
      shapes.push({
        type: "rect", xref: "x", yref: "paper", x0: px(Math.max(ph.start, first)),
        x1: px(Math.min(ph.end, end)), y0: 0.06, y1: 1, line: { width: 0 },
        fillcolor: "rgba(239,83,80,0.12)", layer: "below",
      });
    }
    Plotly.react($("candles"), traces, base({
      uirevision: `${state.symbol} ${state.interval}`, shapes,
      // the x axis sits under the regime band, not on the price axis's lower end
      xaxis: { type: "date", rangeslider: { visible: false }, gridcolor: GRID,
        anchor: "free", position: 0 },
      yaxis: { domain: [0.06, 1], gridcolor: GRID, tickformat: `,.${state.decimals}f`,
        automargin: true },
    }), CONFIG);
    const seen = [...new Set(state.regimes.map((r) => r.regime))];
    const legend = $("regime-legend");
    legend.replaceChildren(...seen.map((name) => {
      const span = document.createElement("span"), box = document.createElement("i");
      box.style.background = colour(REGIME_COLOURS, name);
      span.append(box, name.replaceAll("_", " "));
      return span;
    }));
  }

  function drawTimeline() {
    const segments = (items, lane) => {
      const x = [], y = [], text = [];
      for (const it of items) {
        x.push(px(it.start), px(it.end), null);
        y.push(lane(it), lane(it), null);
        text.push(it.label, it.label, null);
      }
      return { x, y, text };
    };
    const traps = symbolTraps().map((lb) => ({ start: ms(lb.start_ts), end: ms(lb.end_ts),
      type: lb.type, label: `${esc(lb.type)} #${esc(lb.id)} ${esc(lb.direction)}` }));
    const chaos = chaosSpans().map((ph) => ({ ...ph, label: `chaos ${esc(ph.type)}` }));
    const dets = symbolDetections();
    const alerts = state.alerts.filter((a) => a.symbol === state.symbol);
    const traces = [
      { type: "scatter", mode: "lines+markers", name: "injected", hoverinfo: "text+x",
        line: { width: 6, color: "#4da3ff" }, marker: { size: 5 },
        ...segments(traps, (it) => it.type) },
      { type: "scatter", mode: "markers", name: "detected", hoverinfo: "text+x",
        x: dets.map((d) => px(ms(d.detected_at))), y: dets.map((d) => d.trap_type),
        marker: { symbol: "diamond", color: "#ffb74d", size: dets.map((d) => 6 + 10 * d.confidence) },
        text: dets.map((d) => `detected ${esc(d.trap_type)}, confidence ${(+d.confidence).toFixed(2)}`) },
      { type: "scatter", mode: "lines", name: "chaos", hoverinfo: "text+x",
        line: { width: 6, color: "#ef5350" }, ...segments(chaos, (it) => `chaos: ${it.type}`) },
      { type: "scatter", mode: "markers", name: "alert", hoverinfo: "text+x",
        x: alerts.map((a) => px(ms(a.ts))), y: alerts.map((a) => `alert: ${a.type || a.event}`),
        marker: { symbol: "x", color: "#b0bec5", size: 8 },
        text: alerts.map((a) => esc(a.type || a.event)) },
    ];
    const none = !traps.length && !chaos.length && !dets.length && !alerts.length;
    const c = state.candles;
    const span = none && c.length  // an empty timeline spans the candles, not plotly's year
      ? [px(c[0].t), px(c[c.length - 1].t + INTERVAL_MS[state.interval])] : undefined;
    Plotly.react($("timeline"), traces, base({
      uirevision: state.symbol, margin: { l: 10, r: 10, t: 10, b: 30 },
      annotations: none ? empty(`no traps on ${state.symbol} yet`) : [],
      xaxis: { type: "date", gridcolor: GRID, range: span, autorange: !span },
      yaxis: { type: "category", automargin: true, gridcolor: GRID },
    }), CONFIG);
  }

  function drawHeatmap() {
    const types = Object.keys((state.metrics && state.metrics.traps &&
      state.metrics.traps.per_type) || TYPE_COLOURS);
    for (const lb of state.traps) if (!types.includes(lb.type)) types.push(lb.type);
    const z = types.map(() => new Array(24).fill(0));
    const mine = symbolTraps();
    for (const lb of mine) z[types.indexOf(lb.type)][new Date(ms(lb.start_ts)).getUTCHours()] += 1;
    Plotly.react($("heatmap"), [{
      type: "heatmap", x: [...Array(24).keys()], y: types.map((t) => t.replaceAll("_", " ")), z,
      zmin: 0, zmax: Math.max(1, ...z.flat()), colorscale: HEAT, xgap: 1, ygap: 1,
      hovertemplate: "%{y}, %{x}:00 UTC: %{z} traps<extra></extra>",
      colorbar: { thickness: 10, outlinewidth: 0 },
    }], base({
      showlegend: false, margin: { l: 10, r: 10, t: 10, b: 35 },
      annotations: mine.length ? [] : empty(`no traps on ${state.symbol} yet`),
      xaxis: { title: { text: "hour (UTC)" }, dtick: 3, showgrid: false, zeroline: false },
      yaxis: { automargin: true, showgrid: false },
    }), CONFIG);
  }

  const webgl = (() => {
    try {
      return !!document.createElement("canvas").getContext("webgl");
    } catch (err) {
      return false;
    }
  })();

  function draw3d() {
    const el = $("scatter3d");
    if (!webgl) {
      el.textContent = "The 3-D view needs WebGL, which this browser does not offer.";
      return;
    }
    const points = [];
    for (const lb of symbolTraps()) {
      points.push({ t: ms(lb.peak_ts), type: lb.type, conf: 1, kind: "injected" });
    }
    for (const d of symbolDetections()) {
      points.push({ t: ms(d.detected_at), type: d.trap_type, conf: d.confidence, kind: "detected" });
    }
    const byType = new Map();
    for (const p of points) {
      const k = candleAt(p.t);
      if (!k) continue;
      if (!byType.has(p.type)) byType.set(p.type, []);
      byType.get(p.type).push({ ...p, price: k.c, volume: k.v });
    }
    const traces = [...byType].map(([type, ps]) => ({
      type: "scatter3d", mode: "markers", name: type,
      x: ps.map((p) => p.price), y: ps.map((p) => p.volume), z: ps.map((p) => px(p.t)),
      marker: {
        color: colour(TYPE_COLOURS, type), size: ps.map((p) => 4 + 10 * p.conf),
        symbol: ps.map((p) => (p.kind === "injected" ? "diamond" : "circle")), opacity: 0.85,
      },
      text: ps.map((p) => `${esc(p.kind)} ${esc(type)}, confidence ${p.conf.toFixed(2)}`),
      hoverinfo: "text+x+y+z",
    }));
    const axis = (title, extra) => ({ title: { text: title }, gridcolor: GRID,
      backgroundcolor: "rgba(0,0,0,0)", ...extra });
    // with no trap yet an empty 3-D trace keeps the scene (plotly would draw 2-D axes)
    const shown = traces.length ? traces
      : [{ type: "scatter3d", mode: "markers", x: [], y: [], z: [], showlegend: false }];
    Plotly.react(el, shown, base({
      uirevision: state.symbol, margin: { l: 0, r: 0, t: 0, b: 0 },
      annotations: traces.length ? [] : empty(`no traps on ${state.symbol} yet`),
      scene: { xaxis: axis("price"), yaxis: axis("volume"), zaxis: axis("time", { type: "date" }) },
    }), CONFIG);
  }

  function drawStats() {
    const m = state.metrics || {}, d = m.detection, traps = m.traps;
    if (state.last) {
      $("market-time").textContent = px(state.last.t);  // drawn with the rest, not ahead
      const el = $("st-price");
      el.textContent = num(state.last.price, state.decimals);
      el.className = state.previous === null ? "" : state.last.price >= state.previous ? "up" : "down";
    }
    const regime = state.regimes.length ? state.regimes[state.regimes.length - 1].regime : null;
    $("st-regime").textContent = regime ? regime.replaceAll("_", " ") : "–";
    $("regime").textContent = `regime ${regime ? regime.replaceAll("_", " ") : "–"}`;
    $("regime").style.borderColor = regime ? colour(REGIME_COLOURS, regime) : "";
    $("st-ticks").textContent = m.ticks !== undefined ? num(m.ticks, 0) : "–";
    $("st-traps").textContent = traps ? `${traps.total} (${traps.per_hour.toFixed(2)}/h)` : "–";
    const mine = m.symbols && m.symbols[state.symbol];
    $("st-traps-symbol").textContent = mine ? String(mine.traps) : traps ? String(traps.total) : "–";
    $("st-detections").textContent = d || state.detections.length ? String(state.detections.length) : "–";
    $("st-precision").textContent = d ? `${pct(d.precision)} (${d.matched}/${d.detections})` : "–";
    $("st-recall").textContent = d ? `${pct(d.recall)} (${d.matched}/${d.labels})` : "–";
    $("st-hf").textContent = m.hf ? String(m.hf.activations) : "–";
    const live = state.scenarios.filter((s) => s.status !== "ended").length;
    $("st-chaos").textContent = String(live);
    const hf = $("hf");
    hf.textContent = state.hf.active ? `HF mode ON since ${hhmmss(ms(state.hf.since))}` : "HF off";
    hf.className = `badge ${state.hf.active ? "on" : "off"}`;
    $("detector-note").textContent = !d
      ? "No live detector: serve with --detect to score one."
      : `The detector watches ${state.headline}; scored as of ${d.as_of} on labels and ` +
        "detections that can no longer change (precision matched/detections, recall " +
        "matched/labels).";
    const tbody = $("per-type").tBodies[0];
    tbody.replaceChildren();
    if (traps) {
      for (const [type, n] of Object.entries(traps.per_type)) {
        const s = d && d.per_type[type];
        const tr = row(tbody, [[type.replaceAll("_", " ")], [String(n)],
          [s ? pct(s.precision) : "–"], [s ? pct(s.recall) : "–"]]);
        tr.firstChild.style.color = colour(TYPE_COLOURS, type);
      }
    }
  }

  function drawTicks() {
    const tbody = $("ticks").tBodies[0], d = state.decimals;
    tbody.replaceChildren();
    state.ticks.forEach((r, i) => {
      const older = state.ticks[i + 1];
      const cls = older ? (r.price >= older.price ? "up" : "down") : "";
      row(tbody, [[hhmmss(ms(r.ts))], [num(r.price, d), cls], [num(r.bid, d)], [num(r.ask, d)],
        [(+r.volume).toFixed(4)]]);
    });
  }

  function drawScenarios() {
    const tbody = $("scenarios").tBodies[0];
    tbody.replaceChildren();
    for (const s of state.scenarios) {
      const tr = row(tbody, [[s.scenario_id], [s.type], [s.status],
        [(s.symbols || []).join(", ")], [s.start_ts ? px(ms(s.start_ts)) : "–"],
        [s.end_ts ? px(ms(s.end_ts)) : "–"]]);
      tr.dataset.id = s.scenario_id;
      const td = document.createElement("td"), stop = document.createElement("button");
      stop.type = "button";
      stop.textContent = "stop";
      stop.addEventListener("click", () => stopScenario(s.scenario_id));
      td.appendChild(stop);
      tr.appendChild(td);
    }
    $("no-scenarios").hidden = state.scenarios.length > 0;
  }

  function draw() {
    const dirty = state.dirty;
    state.dirty = new Set();
    try {
      if (dirty.has("candles") || dirty.has("traps")) drawCandles();
      if (dirty.has("traps") || dirty.has("timeline")) drawTimeline();
      if (dirty.has("traps")) { drawHeatmap(); draw3d(); }
      if (dirty.has("stats")) drawStats();
      if (dirty.has("ticks")) drawTicks();
      if (dirty.has("scenarios")) drawScenarios();
    } catch (err) {
      showError(err);
      throw err;
    }
  }

  // -- chaos control ----------------------------------------------------------------------
  function chaosDefaults(kind) {
    // a valid body for each POST /chaos/<kind>, on the run's symbols where it can be
    const sym = state.symbol === "BTC-ETH" ? state.headline : state.symbol;
    const inRun = (wanted) => {
      const have = wanted.filter((s) => state.symbols.includes(s));
      return have.length ? have : [state.headline];
    };
    return {
      "price-shock": { symbol: sym, shock_percentage: -10, duration_seconds: 300,
        pattern: "sudden_drop", recovery_time_seconds: 1800 },
      "market-crash": { crash_percentage: -18, crash_duration_minutes: 240,
        symbols: inRun(["BTC-USD", "ETH-USD", "BTC-ETH"]), recovery_pattern: "slow_bounce",
        correlation_increase: 0.95, volume_spike_multiplier: 5, volatility_multiplier: 3 },
      "volatility-spike": { symbol: sym, volatility_multiplier: 3, duration_hours: 1,
        pattern: "constant", preserve_trend: true },
      "stablecoin-depeg": { symbol: "USDT-USD", target_deviation: -0.09, duration_hours: 12,
        pattern: "crisis", recovery_hours: 60, volatility_increase: 10 },
      "gradual-divergence": { base_symbol: "BTC-USD", target_symbol: "BTC-USD-PERP",
        max_spread_bps: 500, buildup_hours: 4, sustain_hours: 8, recovery_hours: 2 },
      "correlation-break": { symbol: "ETH-USD", reference_symbol: "BTC-USD",
        target_correlation: 0, duration_hours: 6 },
      "feed-disruption": { source: "synthetic", affect_symbols: [state.symbol],
        mode: "degraded", packet_loss_percentage: 20, latency_ms: 2000,
        duration_seconds: 3600 },
    }[kind];
  }

  function fillParams(force) {
    const area = $("chaos-params");
    if (!force && area.value !== state.defaultParams) return;  // the user's own edit stays
    state.defaultParams = JSON.stringify(chaosDefaults($("chaos-type").value), null, 1);
    area.value = state.defaultParams;
  }

  function say(text, ok) {
    const out = $("chaos-message");
    out.textContent = text;
    out.className = ok ? "ok" : "error";
  }

  async function write(method, path, body) {
    const token = $("chaos-token").value.trim();
    sessionStorage.setItem(TOKEN_KEY, token);
    const headers = { Authorization: `Bearer ${token}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const r = await fetch(path, { method, headers, body });
    const answer = await r.json().catch(() => null);
    return { r, answer };
  }

  async function startScenario(event) {
    event.preventDefault();
    const kind = $("chaos-type").value;
    let body;
    try {
      body = JSON.stringify(JSON.parse($("chaos-params").value));
    } catch (err) {
      say(`parameters: not valid JSON (${err.message})`, false);
      return;
    }
    say("starting…", true);
    try {
      const { r, answer } = await write("POST", `/chaos/${kind}`, body);
      if (r.ok) say(`started ${answer.scenario_id} (${answer.type})`, true);
      else say(`${r.status}: ${detailOf(answer, r.status)}`, false);
    } catch (err) {
      say(String(err), false);
    }
    poll();
  }

  async function stopScenario(id) {
    try {
      const { r, answer } = await write("DELETE", `/chaos/stop-scenario/${encodeURIComponent(id)}`);
      if (r.ok) say(`stopping ${id}`, true);
      else say(`${r.status}: ${detailOf(answer, r.status)}`, false);
    } catch (err) {
      say(String(err), false);
    }
    poll();
  }

  // -- start ------------------------------------------------------------------------------
  async function start() {
    const health = await getJSON("/health");
    state.symbols = health.symbols;
    state.headline = health.symbols[0];
    const params = new URLSearchParams(location.search);
    state.symbol = state.symbols.includes(params.get("symbol")) ? params.get("symbol") : state.headline;
    if (INTERVAL_MS[params.get("interval")]) state.interval = params.get("interval");
    const select = $("symbol");
    for (const s of state.symbols) select.add(new Option(s, s));
    select.value = state.symbol;
    $("interval").value = state.interval;
    if (health.market_time) $("market-time").textContent = px(ms(health.market_time));
    $("chaos-token").value = sessionStorage.getItem(TOKEN_KEY) || "";
    fillParams(true);

    const change = () => {
      send({ op: "unsubscribe", channels: ["ticks", `candles:${state.interval}`] });
      state.symbol = select.value;
      state.interval = $("interval").value;
      history.replaceState(null, "", `?symbol=${encodeURIComponent(state.symbol)}&interval=${state.interval}`);
      state.candles = [];
      state.ticks = [];
      state.last = state.previous = null;
      subscribeSymbol();
      fillParams(false);
      load().catch(showError);
      poll();
    };
    select.addEventListener("change", change);
    $("interval").addEventListener("change", change);
    $("chaos-type").addEventListener("change", () => fillParams(true));
    $("chaos-form").addEventListener("submit", startScenario);

    connect();
    await load();
    await poll();
    setInterval(poll, POLL_MS);
    setInterval(draw, DRAW_MS);
    draw();
  }

  start().catch(showError);
})();
