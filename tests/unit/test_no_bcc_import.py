"""`import bcc` lives in exactly one module, lazily: everything imports on a machine without BCC."""

from __future__ import annotations

import pkgutil
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("sensor", "models", "rules", "collector")


def all_modules() -> list[str]:
    mods = []
    for pkg in PACKAGES:
        mods.append(pkg)
        for info in pkgutil.walk_packages([str(ROOT / pkg)], prefix=f"{pkg}."):
            if info.name.endswith("__main__"):
                continue
            mods.append(info.name)
    return mods


def test_every_module_imports_without_bcc() -> None:
    code = ("import sys, importlib; sys.modules['bcc'] = None\n"
            f"for m in {all_modules()!r}:\n    importlib.import_module(m)\nprint('ok')")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == "ok"


def test_only_bpf_loader_imports_bcc() -> None:
    pattern = re.compile(r"^\s*(import bcc|from bcc)", re.M)
    hits = [p.relative_to(ROOT).as_posix() for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")
            if pattern.search(p.read_text())]
    assert hits == ["sensor/bpf_loader.py"]
