"""Running `cgsentry-sensor model ...` in-process against a saved engine."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

from models.cli import register
from models.engine import ModelEngine


def model_cli(eng: ModelEngine, store_dir: Path) -> Callable[..., int]:
    """Save ``eng`` under ``store_dir``; return a runner: ``run("show", image, "--json") -> exit code``."""
    eng.store_dir = store_dir
    eng.save_all()
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="c"))

    def run(*argv: str) -> int:
        args = parser.parse_args(["model", "--store", str(store_dir), *argv])
        return int(args.func(args))

    return run
