"""trapsim: a market simulator with labelled market-maker traps and chaos."""

__version__ = "0.1.0"
