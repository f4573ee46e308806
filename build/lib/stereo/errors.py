"""Error classes for mistakes a user can fix: a bad path, a bad file, a bad config value.

The entry points print these as one line (``error: ...``) and exit with status 1; every other exception
is a bug and keeps its traceback. Each class also derives from the built-in exception a caller would
expect (``ValueError``, ``FileNotFoundError``, ...), so ``except ValueError`` keeps working.
"""

from __future__ import annotations


class StereoError(Exception):
    """A user mistake; the message says what, where, and what was expected."""


class ConfigError(StereoError, ValueError):
    """A config key has a wrong type, an out-of-range value or an unknown choice."""


class DataError(StereoError, ValueError):
    """An input file exists but does not hold what was expected (corrupt, wrong size, wrong values)."""


class MissingFileError(StereoError, FileNotFoundError):
    """An input file or folder does not exist."""


class DatasetError(StereoError, RuntimeError):
    """A dataset root does not hold what discovery needs."""


class CheckpointError(StereoError, ValueError):
    """A checkpoint cannot be read or does not match the model it should build."""


class OutputError(StereoError, OSError):
    """An output cannot be written (exists as something else, read-only, disk full, would overwrite an input)."""


class TrainingStopped(StereoError, RuntimeError):
    """Training stopped on purpose (e.g. too many non-finite losses); a checkpoint was written first."""
