"""What every command prints when it is used wrongly: one ``error:`` line and a non-zero exit.

Walks the whole command tree, so a command added later is held to the same promise (docs/usage.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from lutfuse_deploy.cli import cli, main
from lutfuse_deploy.errors import InputError
from lutfuse_deploy.runtime import ARTIFACTS, check_artifact


def commands(group: click.Group = cli, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The argv prefix of every command and group in the tree."""
    yield path
    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, click.Group):
            yield from commands(cmd, (*path, name))
        else:
            yield (*path, name)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


@pytest.mark.parametrize("argv", list(commands()), ids=lambda p: " ".join(p) or "lutfuse-deploy")
def test_an_unknown_option_is_one_error_line(argv: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run([*argv, "--no-such-option"], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: No such option '--no-such-option'"), err
    assert f"(see: {' '.join(('lutfuse-deploy', *argv))} --help)" in err


def test_a_missing_option_and_a_bad_choice_are_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["export"], capsys)
    assert (code, err) == (2, "error: Missing option '--model'. (see: lutfuse-deploy export --help)\n")
    code, _, err = run(["fuse", "--model", "m", "--ir", "a", "--vi", "b", "--out", "c", "--backend", "tflite"],
                       capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: Invalid value for '--backend'")
    code, _, err = run(["no-such-command"], capsys)
    assert code == 2 and err.startswith("error: No such command 'no-such-command'") and err.count("\n") == 1


@pytest.mark.parametrize("backend", [b for b in ARTIFACTS if b not in ("torch", "numba")])  # both take folders
def test_a_wrong_model_path_says_what_it_is(backend: str, tmp_path: Path) -> None:
    """A folder, a missing file and a wrong suffix are each named as what they are."""
    bundle = tmp_path / "lut-fp16"
    bundle.mkdir()
    (bundle / "manifest.json").write_text(json.dumps({"model": "lut", "engine_file": None}))
    (tmp_path / "plain").mkdir()
    (tmp_path / "weights.bin").write_bytes(b"x")
    (tmp_path / "noext").write_bytes(b"x")
    cases = {bundle: "a build bundle folder with no engine built yet (its build.sh makes lut.engine",
             tmp_path / "plain": "a folder", tmp_path / "gone.onnx2": "not an existing file",
             tmp_path / "weights.bin": "a .bin file", tmp_path / "noext": "a file with no suffix"}
    for path, words in cases.items():
        with pytest.raises(InputError) as exc:
            check_artifact(path, backend)
        assert f"the {backend} backend runs " in str(exc.value) and f"; this is {words}" in str(exc.value)
    (bundle / "lut.engine").write_bytes(b"x")
    (bundle / "manifest.json").write_text(json.dumps({"model": "lut", "engine_file": "lut.engine"}))
    if backend == "tensorrt":
        with pytest.raises(InputError) as exc:
            check_artifact(bundle, backend)
        assert f"a build bundle folder (its engine: --model {bundle / 'lut.engine'})" in str(exc.value)
