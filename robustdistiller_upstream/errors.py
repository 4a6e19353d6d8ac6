"""Errors a user can fix (bad path, bad config, bad checkpoint, bad data): the CLI prints them as one line."""


class UserError(Exception):
    """Base of the errors the CLI reports without a traceback."""


class ConfigError(UserError, ValueError):
    """A config file or override that does not fit its dataclass."""


class CheckpointError(UserError):
    """A checkpoint that is missing, unreadable, unsafe to unpickle or of an unknown layout."""


class AudioError(UserError):
    """An audio file or audio bank that cannot be used (unreadable, empty, wrong layout)."""


class TeacherError(UserError):
    """A teacher that cannot be loaded or does not fit the student (missing checkpoint, layer, frame rate)."""


class TrainingError(UserError):
    """A training run that cannot go on (diverged, experiment folder in the way, nothing to resume)."""
