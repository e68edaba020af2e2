"""The one exception type the CLI turns into a one-line message and a non-zero exit code."""


class GenreshiftError(Exception):
    """A problem the user can fix: the message names the file, what is wrong and what to do."""


class AudioError(GenreshiftError):
    """An audio file that cannot be read, is unusable, or cannot be written."""
