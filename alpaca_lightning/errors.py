"""Errors a user can fix. Each message names the problem (file, column, label or key) and the fix."""


class AlpacaError(Exception):
    """Base class: a problem with the user's input or config, not a bug."""


class DataError(AlpacaError):
    """Missing files, missing columns, unknown labels, too few examples, empty pools."""


class AssetError(AlpacaError):
    """A pip-installed model or data asset is missing."""


class TrainingError(AlpacaError):
    """Training went wrong in a way the user can act on (e.g. a non-finite loss)."""


class ConfigError(AlpacaError):
    """A config that contradicts what is on disk (e.g. a run folder of another config)."""


class StorageError(AlpacaError):
    """Writing an artifact failed for lack of space (or quota); nothing half-written is left behind."""
