r"""Free-text narratives → chaos phases, by keyword rules (offline, no model).

``POST /scenario`` (MarketSimulator's, seed 002) takes a narrative such as *"what
if a major stablecoin loses its peg"* and starts or projects the chaos phases it
describes. :func:`interpret` reads it so:

1. The text is cut into clauses at ``; ! ?``, at ``.`` and ``,`` not before a
   digit, and at *and*, *then*, *while*, *after*, *before*, *followed by*.
2. In each clause the :data:`RULES` fire in their order when one of their keywords
   starts a word (``drop`` also matches *drops*, *dropping*); a keyword's text is
   used up by the first rule it fires, and a rule that fired drops the rules it
   ``overrides`` in the same clause (a depeg *drops* the coin, which is not also a
   price shock).
3. The clause's words set each phase's parameters: a severity (*mild*, *minor*,
   *small*… or *major*, *massive*, *severe*…; otherwise normal) picks the rule's
   default size; a number overrides it (``20%``, ``300 bps``, ``5x``, ``to 0.95``
   for a coin's price, ``for 6 hours``/``in 5 minutes`` for the length); direction
   words (*surge*, *pump*, *rally*, *above the peg*, *discount*…) set the sign; a
   named asset (*bitcoin*/*BTC*, *ether*/*ETH*, *perpetual*/*futures*) the symbol.

The rules (keywords match word starts; sizes mild / normal / major):

- ``stablecoin_depeg`` — stablecoin, depeg, peg, tether, USDT, USDC:
  ``stablecoin_depeg`` of USDT-USD (the run's stablecoin, whichever is named),
  −2 / −5 / −9 %, the trough after 12 h.
- ``flash_crash`` — flash crash: ``price_shock`` −5 / −10 / −15 % over 5 minutes.
- ``market_crash`` — crash, collapse, black swan, meltdown, capitulation,
  sell-off, bear market: ``market_crash`` −8 / −18 / −24 % over 4 h (*rebound*,
  *V-shape*: ``v_shape``; *no recovery*: ``none``; else ``slow_bounce``).
- ``volatility_spike`` — volatility spike, volatil…, turbulen…, choppy, whipsaw,
  swings: ×2 / ×3 / ×5 for 6 h (*erratic*: ``random_walk``).
- ``price_shock`` — shock, sudden, plunge, plummet, dump, tank, drop, fall, fell,
  spike, pump, surge, soar, jump, rally, squeeze: ±5 / 10 / 15 % over 5 minutes.
- ``feed_disruption`` — outage, offline, halt, stale, frozen, freeze, latency,
  lag, exchange down, feed failure: ``outage`` (``stale`` for stale/frozen,
  ``degraded`` for latency/lag/slow) for 15 min / 1 h / 4 h.
- ``gradual_divergence`` — diverge, basis, premium, discount: BTC-USD-PERP against
  BTC-USD, 100 / 300 / 500 bps.
- ``correlation_break`` — decouple, correlation break, uncorrelated, decorrelate:
  ETH-USD against BTC-USD, correlation 0.4 / 0 / −0.3 for 6 h.

The sizes are the chaos module's own defaults (a normal crash −18 %, a major depeg
−9 % as USDC in March 2023) scaled down for *mild* and up, within the guard rails'
25 %, for *major*. A number beyond a parameter's range or the guard rails is not
clipped: the phase is refused, naming the limit.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

SEVERITY = {
    "mild": r"mild|minor|small|slight|modest|brief|little|limited",
    "major": r"major|massive|huge|severe|big|large|extreme|catastroph|historic|total|heavy|"
             r"deep|enormous|giant|brutal|violent|panic",
}
"""Words setting the size of every phase of their clause."""
UP = r"surg|soar|pump|ralli|rally|squeez|jump|rise|rising|rose|moon|spike up|up\b|above|premium"
DOWN = r"discount|below|down\b|drop|fall|fell|plung|plummet|dump|tank|crash|sink|sank"
ASSETS = (("BTC-USD-PERP", r"perp|futures?\b"), ("ETH-USD", r"eth\b|ether\b|ethereum"),
          ("BTC-USD", r"btc\b|bitcoin"), ("USDT-USD", r"usdt\b|tether"))
"""Symbols a clause may name (perpetual first: *bitcoin futures* is the perpetual)."""
_CLAUSES = re.compile(r"[;!?]|[.,](?!\d)|\b(?:and then|followed by|then|and|while|after|before)\b")
_PERCENT = re.compile(r"([+-]?\d+(?:\.\d+)?)\s*(?:%|percent\b|pct\b)")
_BPS = re.compile(r"(\d+(?:\.\d+)?)\s*(?:bps\b|basis points?\b)")
_TIMES = re.compile(r"(\d+(?:\.\d+)?)\s*(?:x\b|times\b|-fold\b|fold\b)")
_LEVEL = re.compile(r"\bto\s+\$?(0?\.\d+|1\.\d+)\b")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(seconds?|secs?|s|minutes?|mins?|m|hours?|hrs?|h|"
                       r"days?|d)\b")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


@dataclass(frozen=True, slots=True)
class Clause:
    """What one clause says besides its keywords."""

    text: str
    severity: str  # mild, normal or major
    direction: str | None  # up, down or None
    percent: float | None  # as written (a sign only if written)
    bps: float | None
    times: float | None  # a multiplier: 3x
    level: float | None  # a price level: "to 0.95"
    seconds: float | None  # a length
    assets: tuple[str, ...]  # named symbols, in order of mention

    def size(self, mild: float, normal: float, major: float) -> float:
        """The rule's default size for this clause's severity."""
        return {"mild": mild, "normal": normal, "major": major}[self.severity]

    def asset(self, allowed: tuple[str, ...], default: str) -> str:
        """The first named symbol among ``allowed``, else ``default``."""
        return next((a for a in self.assets if a in allowed), default)


@dataclass(frozen=True, slots=True)
class Rule:
    """One keyword rule: its name, keywords (regular expressions, each matched at a word
    start), the phase it builds from a clause, and the rules it overrides in a clause."""

    name: str
    keywords: tuple[str, ...]
    build: Callable[[Clause], dict]
    overrides: tuple[str, ...] = ()
    pattern: re.Pattern = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        words = "|".join(k.replace(" ", r"[\s-]+") for k in self.keywords)
        object.__setattr__(self, "pattern", re.compile(rf"\b(?:{words})\w*"))


@dataclass(frozen=True, slots=True)
class Fired:
    """A rule that fired: its name, the keyword text, the clause and the phase it built
    (``type`` and parameters, without ``at``)."""

    rule: str
    keyword: str
    clause: str
    phase: dict


def _signed(c: Clause, size: float) -> float:
    """``size`` (or the clause's percent) with the clause's direction (down if none)."""
    value = abs(c.percent) if c.percent is not None else size
    return value if c.direction == "up" else -value


def _depeg(c: Clause) -> dict:
    if c.level is not None:
        deviation = round(c.level - 1.0, 9)
    else:
        deviation = _signed(c, c.size(2, 5, 9)) / 100
    return {"type": "stablecoin_depeg", "symbol": "USDT-USD", "target_deviation": deviation,
            "duration_hours": c.seconds / 3600 if c.seconds else 12.0}


def _shock(c: Clause) -> dict:
    return {"type": "price_shock",
            "symbol": c.asset(("BTC-USD", "ETH-USD", "BTC-USD-PERP", "USDT-USD"), "BTC-USD"),
            "shock_percentage": _signed(c, c.size(5, 10, 15)),
            "duration_seconds": c.seconds or 300.0, "pattern": "sudden_drop",
            "recovery_time_seconds": 1800.0}


def _crash(c: Clause) -> dict:
    pattern = ("v_shape" if re.search(r"v[\s-]?shape|rebound|bounce back|snap back", c.text)
               else "none" if re.search(r"no recovery|never recover|permanent", c.text)
               else "slow_bounce")
    return {"type": "market_crash",
            "crash_percentage": -abs(c.percent) if c.percent is not None else -c.size(8, 18, 24),
            "crash_duration_minutes": c.seconds / 60 if c.seconds else 240.0,
            "recovery_pattern": pattern}


def _volatility(c: Clause) -> dict:
    return {"type": "volatility_spike",
            "symbol": c.asset(("BTC-USD", "ETH-USD", "USDT-USD", "BTC-USD-PERP"), "BTC-USD"),
            "volatility_multiplier": c.times or c.size(2, 3, 5),
            "duration_hours": c.seconds / 3600 if c.seconds else 6.0,
            "pattern": "random_walk" if re.search(r"erratic|random", c.text) else "constant"}


def _outage(c: Clause) -> dict:
    mode = ("stale" if re.search(r"stale|frozen|freez", c.text)
            else "degraded" if re.search(r"latenc|lag|slow|delay", c.text) else "outage")
    return {"type": "feed_disruption", "affect_symbols": list(c.assets or ("BTC-USD", "ETH-USD")),
            "mode": mode, "duration_seconds": c.seconds or c.size(900, 3600, 14_400)}


def _divergence(c: Clause) -> dict:
    if c.bps is not None:
        size = c.bps
    elif c.percent is not None:
        size = abs(c.percent) * 100
    else:
        size = c.size(100, 300, 500)
    return {"type": "gradual_divergence", "base_symbol": "BTC-USD",
            "target_symbol": "BTC-USD-PERP",
            "max_spread_bps": -size if c.direction == "down" else size}


def _decouple(c: Clause) -> dict:
    return {"type": "correlation_break", "target_correlation": c.size(0.4, 0.0, -0.3),
            "duration_hours": c.seconds / 3600 if c.seconds else 6.0}


RULES: tuple[Rule, ...] = (
    Rule("stablecoin_depeg", ("stable ?coin", "de-?peg", "peg", "tether", "usdt", "usdc"),
         _depeg, overrides=("flash_crash", "market_crash", "price_shock")),
    Rule("flash_crash", ("flash crash",), _shock, overrides=("price_shock",)),
    Rule("market_crash", ("crash", "collapse", "black swan", "meltdown", "capitulat",
                          "sell-?off", "bear market"), _crash, overrides=("price_shock",)),
    Rule("volatility_spike", ("volatility spike", "volatil", "turbulen", "choppy", "whipsaw",
                              "swings"), _volatility),
    Rule("price_shock", ("shock", "sudden", "plung", "plummet", "dump", "tank", "drop",
                         "fall", "fell", "spike", "pump", "surg", "soar", "jump", "rall",
                         "squeez"), _shock),
    Rule("feed_disruption", ("outage", "offline", "halt", "stale", "frozen", "freez",
                             "latenc", "lag", "exchange down", "exchange goes down",
                             "feed fail", "feed disruption"), _outage),
    Rule("gradual_divergence", ("diverg", "basis", "premium", "discount"), _divergence),
    Rule("correlation_break", ("decoupl", "correlation break", "uncorrelat", "de-?correlat"),
         _decouple),
)
"""The rules, in the order they fire within a clause."""
KEYWORDS = {r.name: tuple(k.replace("?", "").replace("-", "") for k in r.keywords)
            for r in RULES}
"""Each rule's keywords as words (for an answer that nothing matched)."""


def clauses(text: str) -> list[Clause]:
    """``text`` (any case) cut into :class:`Clause` s, empty ones dropped."""
    out = []
    for part in _CLAUSES.split(text.lower()):
        part = " ".join(part.split())
        if part:
            out.append(_clause(part))
    return out


def _clause(text: str) -> Clause:
    severity = next((name for name, words in SEVERITY.items()
                     if re.search(rf"\b(?:{words})", text)), "normal")
    up, down = re.search(rf"\b(?:{UP})", text), re.search(rf"\b(?:{DOWN})", text)
    direction = None if not (up or down) else "up" if up and (
        not down or up.start() < down.start()) else "down"
    if (m := _PERCENT.search(text)) and m[1][0] in "+-":  # a written sign says it all
        direction = "up" if m[1][0] == "+" else "down"
    d = _DURATION.search(text)
    seconds = float(d[1]) * _UNIT_S[d[2][0]] if d else None
    number = {name: float(m[1]) if (m := rx.search(text)) else None
              for name, rx in (("percent", _PERCENT), ("bps", _BPS), ("times", _TIMES),
                               ("level", _LEVEL))}
    found = [(m.start(), symbol) for symbol, rx in ASSETS for m in re.finditer(rf"\b(?:{rx})",
                                                                               text)]
    assets = tuple(dict.fromkeys(symbol for _, symbol in sorted(found)))
    return Clause(text, severity, direction, seconds=seconds, assets=assets, **number)


def interpret(text: str) -> list[Fired]:
    """The chaos phases a narrative describes (this module's rules), in clause order; an
    empty list if no rule fired."""
    fired: list[Fired] = []
    for clause in clauses(text):
        rest = clause.text
        here: list[tuple[Rule, str]] = []
        for rule in RULES:
            m = rule.pattern.search(rest)
            if m is None or any(rule.name in r.overrides for r, _ in here):
                continue
            here.append((rule, m[0]))
            rest = rest[:m.start()] + " " * len(m[0]) + rest[m.end():]  # used up
        fired += [Fired(rule.name, keyword, clause.text, rule.build(clause))
                  for rule, keyword in here]
    return fired
