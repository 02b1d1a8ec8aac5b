"""``GET /metrics``: the served run in Prometheus text format, with the Market Data
Simulator seed's ``market_data_*`` metric names.

A collector on a private registry reads the live state at scrape time, so the
run loop pays nothing between scrapes.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

SOURCE = "synthetic"


class SeedMetrics:
    """Collector of a :class:`~trapsim.service.api.Served` run's metrics."""

    def __init__(self, served) -> None:
        self.served = served

    def collect(self):
        served = self.served
        state, runner, hub = served.state, served.runner, served.hub
        symbols = state.symbols
        updates = CounterMetricFamily("market_data_price_updates", "Ticks published.",
                                      labels=["symbol", "source"])
        stale = GaugeMetricFamily("market_data_staleness_seconds",
                                  "Wall seconds since the symbol's last published tick.",
                                  labels=["symbol"])
        now = time.monotonic()
        for s in symbols:
            updates.add_metric([s, SOURCE], state.counts[s])
            if s in state.updated:
                stale.add_metric([s], now - state.updated[s])
        scenarios = GaugeMetricFamily("market_data_scenario_active",
                                      "1 while a chaos scenario acts on the symbol.",
                                      labels=["scenario_type", "symbol"])
        active = {(sc["type"], s) for sc in runner.scenarios() if sc["status"] == "active"
                  for s in sc["symbols"]}
        for key in sorted(active):
            scenarios.add_metric(list(key), 1)
        traps = GaugeMetricFamily("market_data_price_manipulation_active",
                                  "Injected traps under way (started, not ended).",
                                  labels=["symbol", "manipulation_type"])
        for key, n in sorted(runner.traps_under_way().items()):
            traps.add_metric(list(key), n)
        subscribers = GaugeMetricFamily("market_data_subscriber_count",
                                        "WebSocket clients subscribed to the symbol.",
                                        labels=["symbol"])
        clients = list(hub.clients)
        for s in symbols:
            subscribers.add_metric([s], sum(1 for c in clients if any(
                sym in (s, None) for _, sym in c.wants)))
        memory = GaugeMetricFamily("market_data_memory_usage_bytes",
                                   "Bytes held by the live buffers.", labels=["buffer_type"])
        memory.add_metric(["ticks"], sum(sum(c.nbytes for c in r.cols.values())
                                         for r in state.rings.values()))
        memory.add_metric(["websocket_queues"], sum(c.buffered() for c in clients))
        yield from (updates, stale, scenarios, traps, subscribers, memory)


def exposition(served) -> bytes:
    """The metrics as Prometheus text."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SeedMetrics(served))
    return generate_latest(registry)
