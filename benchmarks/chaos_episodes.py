"""The default stablecoin depeg and market crash beside the real episodes they follow.

Synthetic: `MultiAssetMarket` (seed 1) with the default `stablecoin_depeg` on
USDT-USD and the default `market_crash` on BTC-USD and ETH-USD (ETH with its
market loading). Real: USDC/USD implied by Binance.US BTC/USD ÷ BTC/USDC around
2023-03-11, and Binance BTC/USDT and ETH/USDT around 2024-08-05. Prints the
comparable numbers and writes an HTML figure (default `chaos_episodes.html`).

Usage: .venv/bin/python benchmarks/chaos_episodes.py [--raw DIR] [--out FILE]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from trapsim.core.time import HOUR_NS
from trapsim.feeds.candles import read_candles
from trapsim.market.multi import MultiAssetMarket
from trapsim.market.realism import excess_kurtosis
from trapsim.scenarios.chaos import ChaosInjector, Scenario

START = 1_736_121_600 * 1_000_000_000
LEAD_H = 12  # hours shown before each episode
DEPEG = {"type": "stablecoin_depeg", "at": f"{LEAD_H}h"}
CRASH = {"type": "market_crash", "at": f"{LEAD_H}h"}


def synthetic(phase: dict, symbols: tuple[str, ...], hours: int) -> dict[str, pd.DataFrame]:
    """Minute closes and volumes of the symbols with the phase applied."""
    market = MultiAssetMarket(symbols, seed=1, start_ts=START)
    sc = Scenario.model_validate({"name": "default", "phases": [phase]})
    beta = {"ETH-USD": getattr(market, "beta", 1.0)}
    inject = {s: ChaosInjector(sc, symbol=s, start_ts=START, seed=1, beta=beta.get(s, 1.0))
              for s in symbols}
    out: dict[str, list] = {s: [] for s in symbols}
    for _ in range(hours):
        chunks, _ = market.next_chunks(3600)
        for s, c in chunks.items():
            out[s].append(inject[s].apply(c))
    frames = {}
    for s, parts in out.items():
        ts = np.concatenate([p.ts for p in parts])
        df = pd.DataFrame({"close": np.concatenate([p.price for p in parts]),
                           "volume": np.concatenate([p.volume for p in parts])},
                          index=pd.to_datetime(ts, utc=True))
        frames[s] = df.resample("1min").agg({"close": "last", "volume": "sum"})
    return frames


def real_depeg(raw: Path) -> pd.DataFrame:
    usd = pd.read_csv(raw / "binanceus_BTCUSD_1m_20230301_20230321.csv")
    usdc = pd.read_csv(raw / "binanceus_BTCUSDC_1m_20230301_20230321.csv")
    m = usd.merge(usdc, on="open_time", suffixes=("_usd", "_usdc"))
    idx = pd.to_datetime(m.open_time, unit="ms", utc=True)
    return pd.DataFrame({"close": (m.close_usd / m.close_usdc).to_numpy()}, index=idx)


def real_candles(raw: Path, name: str) -> pd.DataFrame:
    c = read_candles(raw / name)
    return pd.DataFrame({"close": c.close, "volume": c.volume},
                        index=pd.to_datetime(c.ts, utc=True))


def hours_since(df: pd.DataFrame, t0) -> np.ndarray:
    return (df.index - t0).total_seconds().to_numpy() / 3600


def kurt(close: pd.Series) -> float:
    return excess_kurtosis(np.diff(np.log(close.to_numpy())))


def main() -> None:
    arg = {k: sys.argv[sys.argv.index(k) + 1] for k in ("--raw", "--out") if k in sys.argv}
    raw = Path(arg.get("--raw", Path(__file__).resolve().parents[2] / "shared" / "data" / "raw"))
    out = Path(arg.get("--out", "chaos_episodes.html"))
    t_syn = pd.Timestamp(START + LEAD_H * HOUR_NS, unit="ns", tz="UTC")

    # Depeg: real USDC from 2023-03-10 22:00 UTC (the run on SVB deposits began that night).
    dep = synthetic(DEPEG, ("USDT-USD",), LEAD_H + 96)["USDT-USD"]
    usdc = real_depeg(raw)
    t_real = pd.Timestamp("2023-03-10 22:00", tz="UTC")
    usdc = usdc[t_real - pd.Timedelta(hours=LEAD_H):t_real + pd.Timedelta(hours=96)]
    for name, df, t0 in (("synthetic USDT", dep, t_syn), ("real USDC 2023-03", usdc, t_real)):
        h = hours_since(df, t0)
        hourly = df.close.rolling(60).mean()
        trough = hourly.idxmin()
        after3d = df.close[(h >= 70) & (h <= 74)].mean()
        print(f"{name:22s} trough {hourly.min() - 1:+.2%} (hourly mean) at "
              f"{(trough - t0).total_seconds() / 3600:.1f} h; at 3 days {after3d - 1:+.2%}")

    # Crash: real from 2024-08-04 12:00 UTC, the fall to the 08-05 06:24 low.
    syn = synthetic(CRASH, ("BTC-USD", "ETH-USD"), LEAD_H + 48)
    t_crash = pd.Timestamp("2024-08-04 12:00", tz="UTC")
    real = {s: real_candles(raw, f)[t_crash - pd.Timedelta(hours=LEAD_H):
                                    t_crash + pd.Timedelta(hours=48)]
            for s, f in (("BTC-USD", "BTC_USDT-1m_2024-08.feather"),
                         ("ETH-USD", "ETH_USDT-1m_2024-08.feather"))}
    for label, frames, t0 in (("synthetic", syn, t_syn), ("real 2024-08", real, t_crash)):
        for s, df in frames.items():
            h = hours_since(df, t0)
            before, during = df[h < 0], df[(h >= 0) & (h < 24)]
            ref = before.close.iloc[-60:].mean()
            print(f"{label:13s} {s}: low {during.close.min() / ref - 1:+.1%} within 24 h; "
                  f"volume x{during.volume.mean() / before.volume.mean():.1f}; "
                  f"1-m kurtosis {kurt(before.close):.0f} before, {kurt(during.close):.0f} during")

    fig = make_subplots(rows=2, cols=2, subplot_titles=(
        "stablecoin depeg: synthetic USDT-USD", "real USDC/USD, 2023-03 (Binance.US)",
        "market crash: synthetic BTC-USD and ETH-USD", "real BTC and ETH, 2024-08-05 (Binance)"))
    fig.add_trace(go.Scatter(x=hours_since(dep, t_syn), y=dep.close, name="USDT-USD",
                             line={"width": 1}), 1, 1)
    fig.add_trace(go.Scatter(x=hours_since(usdc, t_real), y=usdc.close, name="USDC/USD",
                             line={"width": 1}), 1, 2)
    for col, frames, t0 in ((1, syn, t_syn), (2, real, t_crash)):
        for s, df in frames.items():
            ref = df.close[hours_since(df, t0) < 0].iloc[-60:].mean()
            fig.add_trace(go.Scatter(x=hours_since(df, t0), y=df.close / ref,
                                     name=f"{s} ({'synthetic' if col == 1 else 'real'})",
                                     line={"width": 1}), 2, col)
    for col in (1, 2):
        fig.update_xaxes(title_text="hours from the episode's start", row=2, col=col)
        fig.update_yaxes(title_text="price / pre-episode level", row=2, col=col)
    fig.update_yaxes(title_text="USD per coin", row=1, col=1)
    fig.update_layout(title="trapsim chaos defaults beside the real episodes", height=800)
    fig.write_html(out, include_plotlyjs="cdn")
    print(f"figure: {out}")


if __name__ == "__main__":
    main()
