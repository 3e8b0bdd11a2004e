"""Heavy optional libraries are imported lazily (Polygraphy's habit): with onnx, onnxruntime, openvino,
tensorrt, matplotlib, polygraphy, av, tritonclient and numba made unimportable, every module still imports and every
command's --help still works; using a missing one names its pip extra."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

BLOCKED = ("onnx", "onnxruntime", "onnxslim", "openvino", "tensorrt", "matplotlib", "polygraphy", "av",
           "tritonclient", "numba")
# modules that are an optional library's code through and through: importing them names their extra
NEEDS_EXTRA = {"lutfuse_deploy.runtime.cpu_kernels": "numba"}

PRELUDE = textwrap.dedent(f"""
    import importlib.abc, sys
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {BLOCKED!r}:
                raise ImportError(f"blocked for the test: {{name}}")
    sys.meta_path.insert(0, Block())
""")


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=300)


def test_every_module_imports_without_optional_libraries() -> None:
    proc = _run("""
        import importlib, pkgutil, lutfuse_deploy
        names = [m.name for m in pkgutil.walk_packages(lutfuse_deploy.__path__, "lutfuse_deploy.")
                 if not m.name.endswith("__main__")]
        from lutfuse_deploy.errors import MissingDependency
        needs = {}
        for name in names:
            try:
                importlib.import_module(name)
            except MissingDependency as exc:
                needs[name] = exc.extra
        assert needs == NEEDS_EXTRA, needs
        print(len(names))
    """.replace("NEEDS_EXTRA", repr(NEEDS_EXTRA)))
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.strip()) > 20


def test_every_command_help_works_without_optional_libraries() -> None:
    proc = _run("""
        import click
        from click.testing import CliRunner
        from lutfuse_deploy.cli import cli
        def walk(group, prefix):
            for name, cmd in group.commands.items():
                yield prefix + [name]
                if isinstance(cmd, click.Group):
                    yield from walk(cmd, prefix + [name])
        runner = CliRunner()
        paths = [[]] + list(walk(cli, []))
        for path in paths:
            res = runner.invoke(cli, path + ["--help"])
            assert res.exit_code == 0, (path, res.output)
            assert "Usage:" in res.output, path
        print(len(paths))
    """)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.strip()) >= 10


def test_missing_optional_library_names_its_extra(tmp_path) -> None:
    proc = _run(f"""
        import sys
        from lutfuse_deploy.cli import main
        sys.argv = ["lutfuse-deploy", "fuse", "--model", "{tmp_path}/m.onnx", "--backend", "onnxruntime",
                    "--ir", "{tmp_path}", "--vi", "{tmp_path}", "--out", "{tmp_path}/o"]
        open("{tmp_path}/m.onnx", "wb").write(b"x")
        (__import__("pathlib").Path("{tmp_path}") / "a.png").write_bytes(b"x")
        main()
    """)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "pip install 'lutfuse-deploy[onnx]'" in proc.stderr, proc.stderr


def test_missing_video_and_triton_extras_are_named(tmp_path) -> None:
    proc = _run(f"""
        from lutfuse_deploy.cli import main
        for argv in (["fuse", "--model", "m.safetensors", "--ir", "a.mp4", "--vi", "b.mp4", "--out", "o.mp4"],
                     ["export", "--model", "m.safetensors", "-o", "{tmp_path}/m.onnx", "--triton", "{tmp_path}/r"]):
            try:
                main(argv)
            except SystemExit as exc:
                print("exit", exc.code)
    """)
    assert proc.stdout.split() == ["exit", "1", "exit", "1"], proc.stderr
    assert "Traceback" not in proc.stderr
    assert "pip install 'lutfuse-deploy[video]'" in proc.stderr, proc.stderr
    assert "pip install 'lutfuse-deploy[triton]'" in proc.stderr, proc.stderr


def test_missing_numba_is_named(tmp_path) -> None:
    proc = _run(f"""
        from PIL import Image
        from lutfuse_deploy.cli import main
        Image.new("L", (8, 8)).save("{tmp_path}/a.png")
        main(["fuse", "--model", "{Path(__file__).resolve().parents[1]}/lutfuse_deploy/pretrained/mini.safetensors",
              "--backend", "numba",
              "--ir", "{tmp_path}/a.png", "--vi", "{tmp_path}/a.png", "--out", "{tmp_path}/o.png"])
    """)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "pip install 'lutfuse-deploy[numba]'" in proc.stderr, proc.stderr
    assert not (tmp_path / "o.png").exists()


def test_the_declared_torch_range_is_the_one_ci_tests() -> None:
    """The package claims only the PyTorch series CI runs: the installed torch and the Makefile's pin
    both satisfy pyproject's requirement, and the range admits no other minor release."""
    import re
    from pathlib import Path

    import tomllib
    import torch
    from packaging.requirements import Requirement
    from packaging.version import Version

    root = Path(__file__).resolve().parents[1]
    deps = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    spec = next(Requirement(d) for d in deps if Requirement(d).name == "torch").specifier
    pin = re.search(r"torch==([0-9.]+)", (root / "Makefile").read_text())
    assert pin, "the Makefile no longer pins the torch CI installs"
    tested = Version(pin.group(1))
    assert tested in spec and Version(torch.__version__.split("+")[0]) in spec
    assert Version(f"{tested.major}.{tested.minor + 1}.0") not in spec, "the range admits an untested series"
    assert Version(f"{tested.major}.{tested.minor - 1}.0") not in spec, "the range admits an untested series"
