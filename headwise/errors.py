"""The error every bad config or data file raises: outside the `headwise.config` package, so
that the modules the config itself uses (the data sources, the pre-flight check) can raise it
without importing the config package (which imports them)."""


class ConfigError(ValueError):
    """A heads config (or the data it names) is invalid. The message names the file and the
    field, line or column."""
