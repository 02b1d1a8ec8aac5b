from functools import cache

import numpy as np
import pytest

from trapsim.market.params import DEFAULT_PARAMS
from trapsim.market.realism import BANDS, check, minute_bars, stylized_facts
from trapsim.service.config import RunConfig
from trapsim.service.simulation import Simulation

# Default runs as `trapsim run --duration 720` makes them: the synthetic market
# with trap injection at the default frequency. The market and its calibration
# were tuned on other seeds; these three were fixed before they were first run.
SEEDS = (31415, 27182, 16180)

# Facts whose 30-day value rests on a handful of events (the most volatile
# hours, 8 weekend days, the largest trap clusters) and so leaves its band in a
# few per cent of seeds even when the model is centred in it (see "Sampling
# noise of the 30-day facts" in trapsim.market.process): for these the median
# over the three runs must lie in the band. Every other fact must hold in
# every run.
NOISY = {"kurt_1h", "weekend_ratio", "acf_abs_240", "abs_acf_r_1", "season_peak_hour",
         "kurt_1m>kurt_1h"}


@cache
def default_run_facts(seed: int) -> dict:
    sim = Simulation(RunConfig(duration=720, sleep=0, seed=seed, market=DEFAULT_PARAMS))
    assert sim.cfg.frequency == 0.2  # the default trap frequency
    ts, price, volume = [], [], []
    for step in sim.batches():
        ticks = step.ticks["BTC-USD"]
        ts.append(ticks.ts)
        price.append(ticks.price)
        volume.append(ticks.volume)
    facts = stylized_facts(*minute_bars(np.concatenate(ts), np.concatenate(price),
                                        np.concatenate(volume)))
    assert facts["minutes"] == 720 * 60
    return facts


@pytest.mark.parametrize("seed", SEEDS)
def test_default_run_with_traps_holds_every_steady_band(seed):
    failed = {fact: value for fact, value, _, ok in check(default_run_facts(seed))
              if not ok and fact not in NOISY}
    assert not failed


def test_median_default_run_with_traps_lands_in_every_band():
    runs = [default_run_facts(seed) for seed in SEEDS]
    median = {b.fact: float(np.median([f[b.fact] for f in runs])) for b in BANDS}
    failed = {b.fact: median[b.fact] for b in BANDS if not b.contains(median[b.fact])}
    assert not failed
    assert np.median([f["kurt_1m"] for f in runs]) > median["kurt_1h"]
