"""Errors the CLI turns into clear messages and exit codes (1 failure, 2 usage)."""

from __future__ import annotations


class Mnistp4Error(Exception):
    """Base class: the message is meant for the user, without a traceback."""

    exit_code = 1


class UsageError(Mnistp4Error):
    """Bad arguments or configuration: exit code 2."""

    exit_code = 2


class ConfigError(UsageError):
    """A configuration key is unknown or has the wrong type; the message names the key."""


class InputError(Mnistp4Error):
    """An input file is unusable; the message names the file, what is wrong and what to do."""


class NothingToCut(InputError):
    """A page that holds no sheet, and is expected to: the back of a sheet in a duplex scan (blank, or
    only the front showing through the paper). Not a failure: the batch reports the message as the
    page's note, cuts no digits from it, and does not try it again while it is unchanged."""


class PluginError(Mnistp4Error):
    """A plugin raised inside a hook, or two plugins conflict."""

    def __init__(self, plugin: str, hook: str, message: str):
        self.plugin, self.hook, self.original = plugin, hook, message
        super().__init__(f"plugin {plugin!r} failed in hook {hook!r}: {message}")


class RegistrationConflict(Mnistp4Error):
    """Two plugins registered the same name of the same kind without ``override=True``."""


class NotProvided(Mnistp4Error):
    """No plugin provides a stage or a registered name."""


class DatasetUnavailable(Mnistp4Error):
    """A dataset is neither on disk nor downloadable."""
