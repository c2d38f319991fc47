"""The models package's exception base."""

from sensor.errors import EX_DATAERR, CgsentryError


class ModelError(CgsentryError):
    """A model that cannot be loaded or an operation on it that cannot be done."""

    exit_code = EX_DATAERR
