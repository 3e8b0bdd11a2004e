"""The one checkpoint format: round trip, and every refusal is one clear line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import assert_one_line_error, pair_folders, run_cli  # noqa: F401 - fixture import
from safetensors.torch import save_file

from lutfuse_deploy.errors import CheckpointError
from lutfuse_deploy.io.checkpoints import META_KEY, load_model, read_metadata, save_checkpoint, weights_sha256
from lutfuse_deploy.io.files import sha256_file
from lutfuse_deploy.models import create_model
from lutfuse_deploy.paths import pretrained_dir


@pytest.mark.parametrize("kind,config", [("lutfuse", {"nodes": 17, "context_scale": 0.5}),
                                         ("mmdrfuse-student", {}), ("mmdrfuse-teacher", {})])
def test_round_trip_keeps_kind_config_and_weights(tmp_path: Path, kind: str, config: dict) -> None:
    model = create_model(kind, config)
    path = save_checkpoint(model, tmp_path / "m.safetensors", provenance={"source": "test"})
    loaded, meta = load_model(path)
    assert meta["kind"] == kind and meta["config"].items() >= config.items()
    assert meta["provenance"]["source"] == "test"
    assert meta["weights_sha256"] == weights_sha256(model.state_dict())
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    assert not loaded.training


def _write(path: Path, state: dict[str, torch.Tensor], meta: dict | None) -> Path:
    save_file(state, str(path), metadata={META_KEY: json.dumps(meta)} if meta is not None else None)
    return path


def _good(tmp_path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    path = save_checkpoint(create_model("mmdrfuse-student"), tmp_path / "good.safetensors")
    from safetensors.torch import load_file

    return load_file(str(path)), read_metadata(path)


def test_refusals(tmp_path: Path) -> None:
    state, meta = _good(tmp_path)
    cases: dict[str, tuple[Path, str]] = {}
    cases["missing"] = (tmp_path / "nope.safetensors", "not found")
    (tmp_path / "garbage.safetensors").write_bytes(b"\x00\x01not a checkpoint at all")
    cases["corrupt"] = (tmp_path / "garbage.safetensors", "not a lutfuse-deploy checkpoint")
    good = (tmp_path / "good.safetensors").read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(good[: len(good) // 2])
    cases["truncated"] = (tmp_path / "trunc.safetensors", "checkpoint|weights")
    cases["no metadata"] = (_write(tmp_path / "plain.safetensors", state, None), "without lutfuse-deploy metadata")
    cases["wrong kind"] = (_write(tmp_path / "kind.safetensors", state, {**meta, "kind": "resnet"}), "unknown model kind")
    nan_state = {k: v.clone() for k, v in state.items()}
    next(iter(nan_state.values()))[0] = float("nan")
    cases["nan"] = (_write(tmp_path / "nan.safetensors", nan_state, {**meta, "weights_sha256": weights_sha256(nan_state)}), "NaN")
    edited = {k: v + 1 for k, v in state.items()}
    cases["edited"] = (_write(tmp_path / "edited.safetensors", edited, meta), "sha256")
    cases["wrong shapes"] = (_write(tmp_path / "shape.safetensors", state, {**meta, "kind": "mmdrfuse-teacher"}), "do not fit")
    for name, (path, needle) in cases.items():
        with pytest.raises(CheckpointError, match=needle) as info:
            load_model(path)
        assert str(path) in str(info.value), name
        assert "\n" not in str(info.value), name


def test_expected_kind_is_enforced(tmp_path: Path) -> None:
    path = save_checkpoint(create_model("mmdrfuse-student"), tmp_path / "s.safetensors")
    with pytest.raises(CheckpointError, match="expected lutfuse"):
        load_model(path, kind="lutfuse")


def test_cli_refuses_non_checkpoint_model(tmp_path: Path, pair_folders: tuple[Path, Path]) -> None:  # noqa: F811
    bogus = tmp_path / "model.safetensors"
    bogus.write_text("hello")
    ir, vi = pair_folders
    proc = run_cli("fuse", "--model", bogus, "--ir", ir, "--vi", vi, "--out", tmp_path / "o")
    assert_one_line_error(proc, str(bogus))
    assert proc.returncode == 1
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_atomic_writes_get_normal_permissions_and_leave_nothing_on_failure(tmp_path: Path) -> None:
    import os

    from lutfuse_deploy.io.files import atomic_path, write_text_atomic

    write_text_atomic(tmp_path / "a.txt", "x")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~umask
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "b.txt") as tmp:
        tmp.write_text("partial")
        raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_a_folder_resolves_to_the_model_not_its_variant(tmp_path: Path) -> None:
    """The shipped folder holds lutfuse.safetensors and lutfuse-fast.safetensors: --model FOLDER means
    the first (a variant's longer name sorts after it, though '-' sorts before '.')."""
    from lutfuse_deploy.io.checkpoints import folder_checkpoints, resolve_checkpoint
    from lutfuse_deploy.models.lut import LutFuseConfig, analytic_lutfuse

    save_checkpoint(analytic_lutfuse(LutFuseConfig(context_scale=0.25)), tmp_path / "lutfuse-fast.safetensors")
    save_checkpoint(analytic_lutfuse(), tmp_path / "lutfuse.safetensors")
    save_checkpoint(create_model("mmdrfuse-student"), tmp_path / "mini.safetensors")
    assert resolve_checkpoint(tmp_path).name == "lutfuse.safetensors"
    assert [p.name for p in folder_checkpoints(tmp_path)] == ["lutfuse.safetensors", "lutfuse-fast.safetensors",
                                                              "mini.safetensors"]


def _file_records(node: object, where: str = "provenance") -> list[tuple[str, dict]]:
    """Every record in a provenance that names a file with a sha256 (teacher, imported sources, ...)."""
    if isinstance(node, dict):
        found = [(where, node)] if "file" in node and "sha256" in node else []
        for key, value in node.items():
            if key != "trained_with":  # the file as it was when training read it, kept beside the current record
                found += _file_records(value, f"{where}.{key}")
        return found
    if isinstance(node, list):
        return [r for i, v in enumerate(node) for r in _file_records(v, f"{where}[{i}]")]
    return []


@pytest.mark.parametrize("name", sorted(p.name for p in pretrained_dir().glob("*.safetensors")))
def test_shipped_provenance_points_at_what_ships(name: str) -> None:
    """A file a shipped checkpoint names (its teacher) is shipped with that sha256 and those weights,
    or the record says it does not ship (``"ships": false``)."""
    meta = read_metadata(pretrained_dir() / name)
    for where, record in _file_records(meta.get("provenance")):
        if record.get("ships") is False:
            continue
        shipped = pretrained_dir() / record["file"]
        assert shipped.is_file(), f"{name} {where} names {record['file']}, which does not ship"
        assert sha256_file(shipped) == record["sha256"], f"{name} {where}: sha256 is not the shipped file's"
        if "weights_sha256" in record:
            assert read_metadata(shipped)["weights_sha256"] == record["weights_sha256"], (name, where)
