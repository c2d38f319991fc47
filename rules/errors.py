"""The rules package's exception base."""

from sensor.errors import EX_DATAERR, CgsentryError


class RuleError(CgsentryError):
    """A rule or policy file that cannot be used; the message names file:line: yaml.path."""

    exit_code = EX_DATAERR
