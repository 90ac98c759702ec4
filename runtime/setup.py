"""Build hook: generate the GoBGP gRPC stubs into the package while it is built."""

import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "build_support"))

import gobgp_stubs  # noqa: E402


class BuildWithGoBGPStubs(build_py):
    def run(self) -> None:
        if self.editable_mode:
            target = HERE / "src" / "porter_lb" / "gobgp_api"
        else:
            target = Path(self.build_lib) / "porter_lb" / "gobgp_api"
        try:
            gobgp_stubs.generate(target)
        except gobgp_stubs.ProtoSourceMissing as error:
            sys.exit(f"error: {error}")
        super().run()


setup(cmdclass={"build_py": BuildWithGoBGPStubs})
