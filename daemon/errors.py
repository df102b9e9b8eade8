"""Errors a user can cause and fix; the CLI turns them into one sentence and exit code 2."""


class UserError(Exception):
    """Something the user can fix (config, arguments, files); its message is one sentence that says what."""

    exit_code = 2


class ConfigError(UserError):
    """The configuration file or its environment overrides are invalid."""
