"""The sensor's exception base and the sysexits codes every cgsentry CLI returns."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable, NoReturn

EX_OK = os.EX_OK if hasattr(os, "EX_OK") else 0
EX_USAGE = 64  # bad command line
EX_DATAERR = 65  # bad input data (corrupt journal, malformed rule file)
EX_NOINPUT = 66  # input file missing
EX_UNAVAILABLE = 69  # a service we need is missing (BCC, Docker, collector)
EX_SOFTWARE = 70  # internal error (a bug)
EX_OSERR = 71  # OS error (cannot attach, cannot mount)
EX_CANTCREAT = 73  # cannot create an output file or directory
EX_IOERR = 74  # I/O error
EX_TEMPFAIL = 75  # try again later (collector away)
EX_NOPERM = 77  # not root / missing capabilities
EX_CONFIG = 78  # configuration error


class UsageParser(argparse.ArgumentParser):
    """argparse with the sysexits code for a bad command line, 64, instead of argparse's 2; its
    sub-parsers are of this class too (``add_subparsers`` uses the parent's class). Both CLIs."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EX_USAGE, f"{self.prog}: error: {message}\n")


class CgsentryError(Exception):
    """Root of every *expected* cgsentry failure; ``str(err)`` is the one line a user sees.

    Each package has its own base under it (``SensorError``, ``ModelError``, ``RuleError``,
    ``CollectorError``). ``exit_code`` is the sysexits code a CLI returns for it; CLI ``main``
    functions catch ``CgsentryError`` only, so anything else is a bug and keeps its traceback.
    """

    exit_code: int = EX_SOFTWARE

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class SensorError(CgsentryError):
    """Base of every expected sensor failure."""


class NotPrivileged(SensorError):
    exit_code = EX_NOPERM


class Unavailable(SensorError):
    exit_code = EX_UNAVAILABLE


class DataError(SensorError):
    exit_code = EX_DATAERR


def run_command(prog: str, handler: Callable[[Any], int], args: Any) -> int:
    """Run a CLI handler: expected failures print one line and return their sysexits code;
    Ctrl-C is 130; a closed pipe (``| head``) is success. Anything else is a bug: traceback."""
    import sys

    from sensor.text import visible

    try:
        return int(handler(args))
    except CgsentryError as err:
        # an error may quote a sensor's or a container's words (a failed action's reason): one
        # line, nothing a terminal would obey
        print(visible(f"{prog}: {err}"), file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


def leaves(p: argparse.ArgumentParser, path: tuple[str, ...],
            every: bool = False) -> list[tuple[argparse.ArgumentParser, tuple[str, ...]]]:
    """The parsers of runnable commands under ``p`` with their command path (``every``: all parsers)."""
    subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]  # noqa: SLF001 - argparse has no API
    found = [(p, path)] if every or not subs else []
    for action in subs:
        for name, child in action.choices.items():
            found += leaves(child, (*path, name), every)
    return found


def show_defaults(p: argparse.ArgumentParser) -> None:
    """Append "(default: X)" to each option's help that has a default worth saying."""
    for action in p._actions:  # noqa: SLF001 - argparse has no API
        default, text = action.default, action.help
        if text == argparse.SUPPRESS or not action.option_strings or "default" in (text or ""):
            continue
        if default in (None, False, True, "", [], argparse.SUPPRESS) or isinstance(action, argparse._HelpAction):  # noqa: SLF001
            continue
        action.help = f"{text or ''} (default: {default})".strip()
