"""HF mode: the streaming tracker against a direct reading of the rule."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from trapsim.core.errors import ConfigError
from trapsim.core.hf import HFTracker, hf_activations

W = 300


def brute(times, k, w):
    """Activations by the rule's words: on at the first time with k traps in (t-w, t]."""
    out, i, n = [], 0, len(times)
    while i < n:
        t = times[i]
        window = [s for s in times[: i + 1] if s > t - w]
        if len(window) < k:
            i += 1
            continue
        first = times.index(window[0])
        j = i
        while j + 1 < n and times[j + 1] - times[j] < w:
            j += 1
        out.append((t, times[j] + w, j - first + 1))
        i = j + 1
    return out


@given(st.lists(st.integers(0, 5000), max_size=40, unique=True), st.integers(1, 4))
def test_matches_rule(raw, k):
    times = sorted(raw)
    got = hf_activations(times, ["x"] * len(times), k, W)
    assert [(a["start_ts"], a["end_ts"], a["trap_count"]) for a in got] == brute(times, k, W)


def test_three_in_window_activate_and_chain_extends():
    acts = hf_activations([0, 100, 200, 450, 2000], list("abcde"), 3, W)
    assert acts == [{"start_ts": 200, "end_ts": 750, "trap_count": 4, "types": list("abcd")}]


def test_three_spread_over_more_than_window_do_not_activate():
    assert hf_activations([0, 200, 300], list("abc"), 3, W) == []


def test_tracker_reports_switch_on_and_off():
    hf = HFTracker(3, W)
    assert hf.add(0, "a") == ([], False)
    assert hf.add(10, "b") == ([], False)
    assert hf.add(20, "c")[1] and hf.active
    assert hf.advance(319) == [] and hf.active
    assert hf.advance(320)[0]["end_ts"] == 320
    assert not hf.active


@pytest.mark.parametrize("k,w", [(0, W), (3, 0)])
def test_bad_parameters(k, w):
    with pytest.raises(ConfigError):
        HFTracker(k, w)


def test_times_at_window_edge_are_outside():
    # (t - w, t] is open on the left: a trap exactly w earlier does not count.
    assert hf_activations(np.array([0, 150, 300]), list("abc"), 3, W) == []
