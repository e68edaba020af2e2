"""The one exception type the CLI turns into a one-line message and a non-zero exit code.

Each error has a ``kind``, one of :data:`KINDS`, so that an interface can react to what went
wrong without reading the message: the web app maps it to an HTTP status. An error about one
setting names it in ``option`` (the CLI's spelling, without dashes: "to", "from", "strength"),
with the value given in ``value``; the message then leaves the setting's name out and each
interface words it its own way: ``--to 'jazz:x': ...`` on the command line (``str(e)``),
``genre 'jazz:x': ...`` in the web app (``e.worded(...)``).
"""

from __future__ import annotations

from collections.abc import Callable

# What went wrong, in a few classes an interface can act on (the web app: its HTTP status).
KINDS = {
    "bad_input": "an input file is missing its data, corrupt, silent or otherwise unusable",
    "unsupported_format": "an input's format (or codec) cannot be decoded here",
    "too_large": "an input is larger or longer than allowed",
    "not_found": "a file or folder that was named does not exist",
    "bad_option": "a setting has a wrong or conflicting value",
    "bad_model": "a checkpoint or model folder is missing, broken or does not fit",
    "output": "an output cannot be written (folder, permissions, disk space)",
    "unavailable": "a service the work needs (a queue, a server) cannot be reached now",
    "internal": "genreshift's own fault: a bug",
}


def cli_flag(option: str) -> str:
    """How the command line names a setting: ``to`` -> ``--to``."""
    return f"--{option}"


def _shown(value: object) -> str:
    if isinstance(value, str):
        return f"'{value}'"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


class GenreshiftError(Exception):
    """A problem the user can fix: the message names the file, what is wrong and what to do.

    ``kind``: one of :data:`KINDS`; the class default is None, "not classified", for which
    an interface keeps the reaction it would have had without kinds (the web app: 400 where a
    user's input or settings are being checked, 500 elsewhere). ``option``/``value``: see the
    module docstring.
    """

    kind: str | None = None

    def __init__(self, message: str = "", *, kind: str | None = None,
                 option: str | None = None, value: object = None) -> None:
        if kind is not None and kind not in KINDS:
            raise ValueError(f"unknown error kind {kind!r}; choose one of {', '.join(KINDS)}")
        if kind is not None:
            self.kind = kind
        self.detail = message
        self.option = option
        self.value = value
        super().__init__(self.worded())

    def worded(self, name: Callable[[str], str] = cli_flag) -> str:
        """The message with the setting it is about called ``name(option)``."""
        if self.option is None:
            return self.detail
        if self.value is None:
            return f"{name(self.option)}: {self.detail}"
        return f"{name(self.option)} {_shown(self.value)}: {self.detail}"

    def __reduce__(self):
        # Exception pickles as cls(*args): args holds the worded message, not the parts.
        return (_restore, (type(self), self.detail, self.__dict__.get("kind"), self.option,
                           self.value))


def _restore(cls: type, detail: str, kind: str | None, option: str | None, value: object
             ) -> GenreshiftError:
    return cls(detail, kind=kind, option=option, value=value)


class AudioError(GenreshiftError):
    """An audio file that cannot be read, is unusable, or cannot be written."""

    kind = "bad_input"
