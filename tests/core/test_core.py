import numpy as np
import pytest

from trapsim.core.config import FrozenModel, read_yaml, validate
from trapsim.core.errors import ConfigError
from trapsim.core.seeding import rng_for
from trapsim.core.time import NS, day_of_week, hour_of_day, iso, parse_ts


def test_time_round_trip_and_calendar():
    ts = parse_ts("2025-01-06T13:45:00Z")  # a Monday
    assert iso(ts) == "2025-01-06T13:45:00Z"
    assert parse_ts("2025-01-06T13:45:00") == ts
    assert parse_ts("2025-01-06T14:45:00+01:00") == ts
    assert hour_of_day(np.array([ts])) == [13]
    assert day_of_week(np.array([ts, ts + 5 * 86400 * NS])).tolist() == [0, 5]


def test_rng_streams_depend_on_seed_and_name_only():
    a = rng_for(1, "market").standard_normal(4)
    assert np.array_equal(a, rng_for(1, "market").standard_normal(4))
    assert not np.array_equal(a, rng_for(2, "market").standard_normal(4))
    assert not np.array_equal(a, rng_for(1, "traps").standard_normal(4))


class M(FrozenModel):
    x: int = 1


def test_unknown_key_is_named(tmp_path):
    with pytest.raises(ConfigError, match="where: y"):
        validate(M, {"y": 2}, "where")
    bad = tmp_path / "c.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        read_yaml(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        read_yaml(tmp_path / "missing.yaml")
