"""Generate the CRI v1 client modules: ``python -m sensor.cri_proto.build [--check]``.

``v1/cri.proto`` declares the subset of CRI v1 the sensor and its tests use, ``containerd/*.proto``
the subset of containerd's own services it reads for plain namespaces (``ctr run``). The generated code is
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
PROTOS = ("sensor/cri_proto/v1/cri.proto", "sensor/cri_proto/containerd/containers.proto",
          "sensor/cri_proto/containerd/images.proto", "sensor/cri_proto/containerd/namespaces.proto")


def outputs(proto: str) -> list[str]:
    stem = proto.removesuffix(".proto")
    return [f"{stem}_pb2.py", f"{stem}_pb2_grpc.py", f"{stem}_pb2.pyi"]


def generate(out_dir: Path) -> None:
    from grpc_tools import protoc

    for proto in PROTOS:
        args = ["protoc", f"-I{ROOT}", f"--python_out={out_dir}", f"--pyi_out={out_dir}",
                f"--grpc_python_out={out_dir}", str(ROOT / proto)]
        if protoc.main(args) != 0:
            raise SystemExit(f"protoc failed on {proto}")


def main(argv: list[str]) -> int:
    if "--check" not in argv:
        generate(ROOT)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        stale = [n for p in PROTOS for n in outputs(p)
                 if not filecmp.cmp(Path(tmp) / n, ROOT / n, shallow=False)]
    if stale:
        print(f"generated code is stale: {', '.join(stale)} (run `make proto`)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
