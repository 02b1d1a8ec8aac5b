"""Build step of trapsim: the gRPC modules are generated from the ``.proto`` files.

``src/trapsim/service/rpc/*.proto`` are compiled by ``grpc_tools.protoc`` (pinned in
``[build-system] requires``) into ``*_pb2.py``, ``*_pb2.pyi`` and ``*_pb2_grpc.py`` beside
them, before the modules are collected, so a wheel ships them and an editable install
(which imports from ``src``) finds them. They are never committed (``.gitignore``).
Everything else is configured in ``pyproject.toml``.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SRC = Path(__file__).resolve().parent / "src"


def generate_grpc_modules() -> None:
    """Compile every ``.proto`` of ``trapsim/service/rpc`` into Python modules under ``src``.

    Raises
    ------
    RuntimeError
        If protoc reports an error (it prints what and where).
    """
    import grpc_tools
    from grpc_tools import protoc

    protos = sorted((SRC / "trapsim" / "service" / "rpc").glob("*.proto"))
    well_known = Path(grpc_tools.__file__).parent / "_proto"  # google/protobuf/*.proto
    args = ["protoc", f"-I{SRC}", f"-I{well_known}", f"--python_out={SRC}",
            f"--pyi_out={SRC}", f"--grpc_python_out={SRC}", *map(str, protos)]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {', '.join(p.name for p in protos)}")


class BuildPy(build_py):
    """``build_py`` that generates the gRPC modules first."""

    def run(self) -> None:
        generate_grpc_modules()
        super().run()


setup(cmdclass={"build_py": BuildPy})
