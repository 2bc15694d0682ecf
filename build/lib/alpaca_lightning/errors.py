"""Errors a user can fix. Each message names the problem (file, column, label or key) and the fix."""


class AlpacaError(Exception):
    """Base class: a problem with the user's input or config, not a bug."""


class DataError(AlpacaError):
    """Missing files, missing columns, unknown labels, too few examples, empty pools."""


class AssetError(AlpacaError):
    """A pip-installed model or data asset is missing."""


class TrainingError(AlpacaError):
    """Training went wrong in a way the user can act on (e.g. a non-finite loss)."""
