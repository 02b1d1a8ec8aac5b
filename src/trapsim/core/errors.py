"""The one error hierarchy; the CLI turns any :class:`TrapsimError` into one line and exit 2."""


class TrapsimError(Exception):
    """Base class of every error trapsim raises for bad input or a failed resource."""


class ConfigError(TrapsimError):
    """A configuration key, option or parameter is unknown or out of range."""


class DataError(TrapsimError):
    """An input data file is malformed (unreadable, missing columns, bad rows)."""


class SinkError(TrapsimError):
    """An output sink cannot be written."""
