"""Generate the protobuf/gRPC modules: ``python -m collector.proto.build [--check]``.

The generated code is committed (so installs need no protoc); ``--check`` regenerates into a
temp dir and fails if the committed files differ — CI runs it so the two cannot drift.
"""

from __future__ import annotations

import filecmp
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTO = "collector/proto/cgsentry/v1/cgsentry.proto"
OUTPUTS = ("cgsentry_pb2.py", "cgsentry_pb2_grpc.py", "cgsentry_pb2.pyi")


def generate(out_dir: Path) -> None:
    from grpc_tools import protoc

    args = ["protoc", f"-I{ROOT}", f"--python_out={out_dir}", f"--pyi_out={out_dir}",
            f"--grpc_python_out={out_dir}", str(ROOT / PROTO)]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


def main(argv: list[str]) -> int:
    target = ROOT / Path(PROTO).parent
    if "--check" not in argv:
        generate(ROOT)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        fresh = Path(tmp) / Path(PROTO).parent
        stale = [n for n in OUTPUTS if not filecmp.cmp(fresh / n, target / n, shallow=False)]
    if stale:
        print(f"generated code is stale: {', '.join(stale)} (run `make proto`)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
