import math
import os
from functools import cache
from pathlib import Path

import numpy as np
import pyarrow.feather as feather
import pytest
import yaml

from trapsim.core.errors import ConfigError, DataError, SinkError
from trapsim.core.time import MINUTE_NS, iso, parse_ts
from trapsim.market.calibration import (
    BASE_LEVEL,
    MIN_MINUTES,
    MIN_RUN_MIN,
    TRAP_VARIANCE_FACTOR,
    calibrate,
    classify_regimes,
)
from trapsim.market.multi import ETH_PARAMS
from trapsim.market.params import DEFAULT_PARAMS, MarketParams, load_params
from trapsim.market.process import SyntheticMarket
from trapsim.market.realism import BANDS, minute_bars, stylized_facts
from trapsim.market.regimes import REGIMES
from trapsim.service.config import RunConfig
from trapsim.service.simulation import Simulation

RAW = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "raw"
COLUMNS = ("open", "high", "low", "close", "volume")


@cache
def candles(name: str) -> dict:
    table = feather.read_table(RAW / name)
    out = {c: table[c].to_numpy() for c in COLUMNS}
    out["ts"] = table["date"].cast("int64").to_numpy()
    return out


def fit(c: dict) -> MarketParams:
    return calibrate(c["ts"], *(c[k] for k in COLUMNS))


def facts_of_run(params: MarketParams, seed: int, start_ts: int, days: int = 30) -> dict:
    market = SyntheticMarket(params, seed=seed, start_ts=start_ts)
    chunks = [market.next_chunk(21_600) for _ in range(days * 4)]
    ts, price, volume = (np.concatenate([getattr(c, f) for c in chunks])
                         for f in ("ts", "price", "volume"))
    return stylized_facts(*minute_bars(ts, price, volume))


@pytest.mark.parametrize("name, params", [("BTC_USDT-1m.feather", DEFAULT_PARAMS),
                                          ("ETH_USDT-1m.feather", ETH_PARAMS)])
def test_default_params_are_the_calibration_of_the_2025_files(name, params):
    fitted = fit(candles(name)).model_dump()
    default = params.model_dump()

    def same(a, b):
        if isinstance(a, dict):
            return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
        if isinstance(a, tuple | list):
            return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
        return a == pytest.approx(b, rel=1e-5, abs=1e-9)

    assert same(fitted, default)


def facts_of_default_run(params: MarketParams, seed: int, start_ts: int, days: int = 30) -> dict:
    """Facts of a run as `trapsim run` makes it: trap injection at the default frequency."""
    sim = Simulation(RunConfig(duration=24 * days, sleep=0, seed=seed, start=iso(start_ts),
                               market=params))
    ts, price, volume = [], [], []
    for step in sim.batches():
        ticks = step.ticks["BTC-USD"]
        ts.append(ticks.ts)
        price.append(ticks.price)
        volume.append(ticks.volume)
    return stylized_facts(*minute_bars(np.concatenate(ts), np.concatenate(price),
                                       np.concatenate(volume)))


def test_runs_with_and_without_traps_bracket_the_volatility_level_of_the_file():
    # The trap allowance: the base sits below the file's level and a default run,
    # traps included, above it, by about TRAP_VARIANCE_FACTOR ** 0.25 each way.
    assert BASE_LEVEL == pytest.approx(TRAP_VARIANCE_FACTOR ** -0.25)
    for name in ("BTC_USDT-1m.feather", "BTC_USDT-1m_2024-08.feather"):
        c = candles(name)
        real = stylized_facts(c["ts"], c["close"], c["volume"])["ann_vol"]
        params = fit(c)
        start = int(c["ts"][0])
        base = np.mean([facts_of_run(params, s, start)["ann_vol"] for s in (31, 32)])
        with_traps = np.mean([facts_of_default_run(params, s, start)["ann_vol"] for s in (31, 32)])
        assert base < real < with_traps
        assert base == pytest.approx(BASE_LEVEL * real, rel=0.15)
        assert with_traps == pytest.approx(real / BASE_LEVEL, rel=0.15)
        assert math.sqrt(base * with_traps) == pytest.approx(real, rel=0.1)


def test_calibrated_run_is_closer_to_its_file_than_the_defaults():
    c = candles("BTC_USDT-1m_2024-08.feather")  # a different month: the 2024-08-05 crash
    real = stylized_facts(c["ts"], c["close"], c["volume"])
    params = fit(c)

    def distance(p):
        # Mean over two runs of the summed gaps to the file, in units of band width.
        return np.mean([sum(abs(f[b.fact] - real[b.fact]) / (b.hi - b.lo) for b in BANDS)
                        for f in (facts_of_run(p, s, int(c["ts"][0])) for s in (41, 42))])

    assert distance(params) < 0.8 * distance(DEFAULT_PARAMS)


def test_regime_classes_of_the_real_file():
    c = candles("BTC_USDT-1m.feather")
    code = classify_regimes(c["ts"], c["close"])
    assert code.dtype == np.int8 and code.shape == c["ts"].shape
    assert set(np.unique(code)) == set(range(len(REGIMES)))
    starts = np.flatnonzero(np.r_[True, code[1:] != code[:-1]])
    assert np.all(np.diff(starts)[1:] >= MIN_RUN_MIN)  # all but the first spell


def test_regime_classes_of_a_made_up_series():
    # Blocks in the classifier's proportions (40 % low, 40 % moderate, 20 % high
    # volatility): calm; moderate rally; moderate sell-off; violent rally; violent
    # sell-off.
    rng = np.random.default_rng(0)
    day = 1440
    blocks = [(4, 2e-4, 0.0, [0]), (2, 5e-4, 1e-4, [1]), (2, 5e-4, -1e-4, [2]),
              (1, 1.5e-3, 2e-4, [3]), (1, 1.5e-3, -2e-4, [4])]
    sd = np.concatenate([np.full(d * day, s) for d, s, _, _ in blocks])
    drift = np.concatenate([np.full(d * day, m) for d, _, m, _ in blocks])
    close = 50_000 * np.exp(np.cumsum(drift + sd * rng.standard_normal(len(sd))))
    ts = parse_ts("2024-03-04T00:00:00Z") + np.arange(len(sd)) * MINUTE_NS
    code = classify_regimes(ts, close)
    start = 0
    for days, _, _, wanted in blocks:
        inner = code[start + day // 4: start + days * day - day // 4]  # away from the edges
        assert np.isin(inner, wanted).mean() > 0.8
        start += days * day


def _short(n=MIN_MINUTES):
    c = candles("BTC_USDT-1m.feather")
    return {k: v[:n].copy() for k, v in c.items()}


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda c: {k: v[:-1] for k, v in c.items()}, "at least"),
        (lambda c: {**c, "volume": c["volume"][:-1]}, "shape"),
        (lambda c: {**c, "ts": c["ts"][::-1].copy()}, "increasing"),
        (lambda c: {**c, "ts": c["ts"].astype(float)}, "int64"),
        (lambda c: {**c, "close": np.where(np.arange(len(c["close"])) == 9, 0.0, c["close"])},
         "close"),
        (lambda c: {**c, "open": np.where(np.arange(len(c["open"])) == 9, np.nan, c["open"])},
         "open"),
        (lambda c: {**c, "high": c["low"] - 1.0}, "high"),
        (lambda c: {**c, "volume": np.zeros_like(c["volume"])}, "volume"),
    ],
)
def test_bad_candles_raise_data_error(change, match):
    c = change(_short())
    with pytest.raises(DataError, match=match):
        fit(c)


def test_three_days_are_enough():
    c = candles("BTC_USDT-1m.feather")
    for start in range(0, len(c["ts"]) - MIN_MINUTES, 20 * 1440):
        part = {k: v[start:start + MIN_MINUTES] for k, v in c.items()}
        assert isinstance(fit(part), MarketParams)


def test_classify_regimes_rejects_bad_input():
    c = _short(100)
    with pytest.raises(DataError, match="at least 2"):
        classify_regimes(c["ts"][:1], c["close"][:1])
    with pytest.raises(DataError, match="shape"):
        classify_regimes(c["ts"], c["close"][:-1])
    with pytest.raises(DataError, match="close"):
        classify_regimes(c["ts"], -c["close"])


def test_yaml_round_trip_is_exact_and_atomic(tmp_path):
    out = tmp_path / "params.yaml"
    DEFAULT_PARAMS.to_yaml(out, comment="first line\nsecond line")
    text = out.read_text()
    assert text.startswith("# first line\n# second line\n")
    assert load_params(out) == DEFAULT_PARAMS
    assert os.listdir(tmp_path) == ["params.yaml"]
    with pytest.raises(SinkError, match="cannot write"):
        DEFAULT_PARAMS.to_yaml(tmp_path / "missing" / "params.yaml")


def _write(tmp_path, data) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _default_data():
    return DEFAULT_PARAMS.model_dump(mode="json")


def _without_ann_vol(d):
    del d["regimes"]["ann_vol"]


def _negative_ann_vol(d):
    d["regimes"]["ann_vol"][2] = -0.1


def _typo(d):
    d["volume"]["mean_per_minut"] = 1.0


def _bearish_drift_up(d):
    d["regimes"]["drift_per_day"][4] = 0.01


def _row_sum(d):
    d["regimes"]["jump_chain"][1][2] += 0.1


def _short_profile(d):
    d["seasonality"]["hour_vol"] = d["seasonality"]["hour_vol"][:23]


def _mismatched_factors(d):
    d["volatility"]["factor_variance"] = d["volatility"]["factor_variance"][:3]


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (_without_ann_vol, "regimes.ann_vol"),
        (_negative_ann_vol, "regimes.ann_vol.2"),
        (_typo, "volume.mean_per_minut"),
        (_bearish_drift_up, "regimes.drift_per_day"),
        (_row_sum, "regimes.jump_chain"),
        (_short_profile, "seasonality.hour_vol"),
        (_mismatched_factors, "volatility"),
    ],
)
def test_bad_params_yaml_names_the_key(tmp_path, edit, key):
    data = _default_data()
    edit(data)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_params(_write(tmp_path, data))


def test_unreadable_params_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("regimes: [unclosed\n")
    with pytest.raises(ConfigError, match="YAML"):
        load_params(bad)
