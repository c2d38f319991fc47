"""Generate the CRI v1 client modules: ``python -m sensor.cri_proto.build [--check]``.

``v1/cri.proto`` declares the subset of CRI v1 the sensor and its tests use. The generated code is
committed (installs need no protoc); ``--check`` regenerates into a temp dir and fails if the
committed files differ. Ours rather than PyPI's container-runtime-interface-api, which pins
protobuf 6 where this project needs 7.
"""

from __future__ import annotations

import filecmp
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTO = "sensor/cri_proto/v1/cri.proto"
OUTPUTS = ("cri_pb2.py", "cri_pb2_grpc.py", "cri_pb2.pyi")


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
