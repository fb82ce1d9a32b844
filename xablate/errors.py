"""The one exception type a user sees: bad input, reported as a single line before any work starts."""


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the value and what is allowed."""
