import numpy as np
import pytest

from trapsim.core.time import parse_ts
from trapsim.market.params import DEFAULT_PARAMS
from trapsim.market.process import SyntheticMarket
from trapsim.market.realism import check, minute_bars, stylized_facts

START = parse_ts("2025-01-06T00:00:00Z")  # the run default: a Monday, 00:00 UTC


# The model and its calibration were developed on other seeds; these three were
# fixed before they were first run.
@pytest.mark.parametrize("seed", [11, 12, 13])
def test_default_30_day_run_lands_in_every_band(seed):
    market = SyntheticMarket(DEFAULT_PARAMS, seed=seed, start_ts=START)
    chunks = [market.next_chunk(21_600) for _ in range(120)]
    ts, price, volume = (np.concatenate([getattr(c, f) for c in chunks])
                         for f in ("ts", "price", "volume"))
    facts = stylized_facts(*minute_bars(ts, price, volume))
    failed = {fact: value for fact, value, _, ok in check(facts) if not ok}
    assert not failed
