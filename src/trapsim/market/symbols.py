"""Per-symbol settings: price precision, sane price band, circuit breaker, depeg alert.

The settings follow the Market Data Simulator seed's ``supported_symbols`` config
(``market_data: supported_symbols: [{symbol, base_asset, quote_asset, decimals,
min_price, max_price, circuit_breaker_threshold, depeg_alert_threshold}]``). The
defaults ship in ``symbols.yaml`` beside this module; a user's file in the same
format overrides them field by field, so an entry may give just ``symbol`` and the
fields it changes.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
from pydantic import Field, ValidationError, model_validator

from trapsim.core.config import FrozenModel, describe, read_yaml
from trapsim.core.errors import ConfigError
from trapsim.market.multi import SYMBOLS

DEFAULT_FILE = Path(__file__).with_name("symbols.yaml")


class SymbolSpec(FrozenModel):
    """The settings of one symbol.

    Attributes
    ----------
    symbol, base_asset, quote_asset : str
        ``BASE-QUOTE`` name and its two assets.
    decimals : int
        Price precision: subscribers get quotes on a grid of ``10**-decimals`` (quote
        currency); also the step of the L2 book.
    min_price, max_price : float
        Sane price band (quote currency); prices outside are withheld from subscribers.
    circuit_breaker_threshold : float or None
        Largest relative move within 60 s that is still published; None: no breaker.
    depeg_alert_threshold : float or None
        Relative distance from 1.0 that raises a depeg alert (stablecoins); None: none.
    """

    symbol: str
    base_asset: str
    quote_asset: str
    decimals: int = Field(ge=0, le=12)
    min_price: float = Field(gt=0)
    max_price: float = Field(gt=0)
    circuit_breaker_threshold: float | None = Field(None, gt=0, le=1)
    depeg_alert_threshold: float | None = Field(None, gt=0, lt=1)

    @model_validator(mode="after")
    def _band(self) -> SymbolSpec:
        if self.max_price <= self.min_price:
            raise ValueError(f"max_price {self.max_price:g} must exceed min_price "
                             f"{self.min_price:g}")
        return self

    @property
    def tick_size(self) -> float:
        """Price step of the grid, quote currency."""
        return 10.0 ** -self.decimals

    def on_grid(self, price: np.ndarray, bid: np.ndarray,
                ask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Prices rounded to the grid: ``price`` to the nearest step, ``bid`` down, ``ask`` up.

        Rounding outwards keeps ``bid <= price <= ask`` and a quote never crossed.
        """
        scale = 10.0 ** self.decimals
        # A quote already on the grid can sit an ulp below its step after scaling.
        eps = 1e-7
        return (np.round(price * scale) / scale, np.floor(bid * scale + eps) / scale,
                np.ceil(ask * scale - eps) / scale)


def load_symbol_settings(path: str | Path | None = None) -> dict[str, SymbolSpec]:
    """The shipped settings with a user's file over them, by symbol.

    Parameters
    ----------
    path : str or Path, optional
        A YAML file in the seed's format (``market_data: supported_symbols: [...]`` or
        ``supported_symbols: [...]`` at the top); entries name a known symbol and
        override the shipped settings field by field.

    Raises
    ------
    ConfigError
        On an unreadable file, an unknown symbol or key, or an out-of-range value,
        naming the entry.
    """
    specs = dict(_shipped())
    return specs if path is None else _read(Path(path), specs)


@cache
def _shipped() -> dict[str, SymbolSpec]:
    return _read(DEFAULT_FILE, {})


def _read(path: Path, base: dict[str, SymbolSpec]) -> dict[str, SymbolSpec]:
    """``path``'s entries over ``base``."""
    data = read_yaml(path)
    data = data.get("market_data", data)
    if not isinstance(data, dict) or set(data) != {"supported_symbols"}:
        raise ConfigError(f"{path}: expected supported_symbols (under market_data or at the "
                          "top) and nothing else")
    entries = data["supported_symbols"]
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(f"{path}: supported_symbols must be a list of mappings")
    for i, entry in enumerate(entries):
        name = entry.get("symbol")
        if name not in SYMBOLS:
            raise ConfigError(f"{path}: supported_symbols[{i}]: unknown symbol {name!r}; "
                              f"known: {', '.join(SYMBOLS)}")
        try:
            base[name] = SymbolSpec.model_validate(
                {**(base[name].model_dump() if name in base else {}), **entry})
        except ValidationError as err:
            raise ConfigError(describe(err, f"{path}: supported_symbols[{i}]")) from None
    return base
