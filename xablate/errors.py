"""The exception types a user sees, each reported as a single line."""


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the value and what is allowed."""


class WriteError(RuntimeError):
    """A run file could not be written (a full disk, a quota, a read-only folder); the message names the
    file, the reason and, for a full disk, how much space the write needed. The previous file is intact."""
