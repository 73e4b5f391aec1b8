"""The one exception type the CLI turns into a single clear line and a non-zero exit."""


class ReproError(Exception):
    """A user-facing error: bad input, bad data, bad flags. The message says what and what to do."""
