"""Random generators spawned from the run seed by component name.

Every random component takes its own :class:`numpy.random.Generator`; nothing
touches global RNG state, so adding a component never changes another's draws.
"""

from __future__ import annotations

import hashlib

import numpy as np


def rng_for(seed: int, name: str) -> np.random.Generator:
    """Return the generator of component ``name`` for run ``seed``.

    The stream depends only on ``(seed, name)``: a stable hash of ``name`` is
    folded into the :class:`numpy.random.SeedSequence` entropy.
    """
    key = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, key])))
