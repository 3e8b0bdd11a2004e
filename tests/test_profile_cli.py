"""``lutfuse-deploy profile`` end to end with fake runners (create_runner monkeypatched in-process).

Fake runners sleep a fixed time, so the only timing facts used are ones that cannot flake: a 5 ms
sleep takes more than 1e-6 ms and less than 100 s, and (as the median of 3 runs, so one
descheduled run cannot decide it) longer than a call that does nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from profile_fakes import FakeRunner

from lutfuse_deploy import runtime
from lutfuse_deploy.cli import main

FAST = ["--iters", "3", "--warmup", "1", "--resolutions", "32x24"]


@pytest.fixture
def models(tmp_path):
    paths = {}
    for name in ("lut.safetensors", "lut.onnx", "student.safetensors", "lut.engine"):
        paths[name] = tmp_path / name
        paths[name].write_bytes(b"fake")
    return paths


@pytest.fixture
def created(monkeypatch):
    """Replace create_runner with fakes: kind from the file name, 5 ms for torch, 0 ms otherwise."""
    calls: list[tuple[str, str, dict]] = []

    def fake_create(model, backend="torch", **options):
        calls.append((Path(model).name, backend, options))
        kind = "mmdrfuse-student" if "student" in Path(model).name else "lutfuse"
        cost = 5.0 if backend == "torch" else 0.0
        return FakeRunner(Path(model).name, kind=kind, backend=backend, costs_ms=(cost,))

    monkeypatch.setattr(runtime, "create_runner", fake_create)
    return calls


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return int(info.value.code or 0), out, err


def _budget(tmp_path, text: str) -> Path:
    path = tmp_path / "budget.yaml"
    path.write_text(text)
    return path


def test_help_documents_pairing_and_options(capsys):
    code, out, _ = run_cli(capsys, "profile", "--help")
    assert code == 0
    for needle in ("--model", "--backend", "--iters", "--duration", "--budget", "--plot", "--json", "zipped",
                   "one model, k backends", "WIDTHxHEIGHT", "--threads", "--data", "--device"):  # fmt: skip
        assert needle in out


def test_zipped_pairs_json_and_plot(tmp_path, models, created, capsys):
    j, p = tmp_path / "prof.json", tmp_path / "prof.png"
    code, out, _ = run_cli(
        capsys, "profile", "--model", models["lut.safetensors"], "--backend", "torch",
        "--model", models["lut.onnx"], "--backend", "onnxruntime", *FAST, "--threads", "2",
        "--json", j, "--plot", p,
    )  # fmt: skip
    assert code == 0
    assert [(m, b) for m, b, _ in created] == [("lut.safetensors", "torch"), ("lut.onnx", "onnxruntime")]
    assert all(opts == {"threads": 2, "device": "cpu"} for *_, opts in created)
    assert "x faster than torch" in out and "lutfuse/onnxruntime" in out
    doc = json.loads(j.read_text())
    assert [r["backend"] for r in doc["results"]] == ["torch", "onnxruntime"]
    assert all(r["iterations"] == 3 and r["p95_ms"] > 0 for r in doc["results"])
    assert doc["environment"]["threads"]["requested"] == 2
    assert doc["settings"]["rounds"] == 3 == len(doc["results"][0]["rounds"])  # --iters 3: the rounds that ran
    assert doc["results"][1]["speedup_vs_reference"] > 1.0  # 0 ms fake vs a 5 ms sleep
    assert p.read_bytes()[:4] == b"\x89PNG"


def test_one_model_many_backends_and_suffix_inference(models, created, capsys):
    code, *_ = run_cli(
        capsys, "profile", "--model", models["lut.safetensors"], "--backend", "torch,onnxruntime", *FAST
    )
    assert code == 0
    assert [(m, b) for m, b, _ in created] == [
        ("lut.safetensors", "torch"),
        ("lut.safetensors", "onnxruntime"),
    ]
    created.clear()
    code, *_ = run_cli(
        capsys, "profile", "--model", models["lut.onnx"], "--model", models["lut.engine"], *FAST
    )
    assert code == 0
    assert [(m, b) for m, b, _ in created] == [("lut.onnx", "onnxruntime"), ("lut.engine", "tensorrt")]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--resolutions", "640by480"], "WIDTHxHEIGHT"),
        (["--backend", "torch", "--backend", "onnxruntime", "--backend", "tensorrt"], "paired in order"),
        (["--backend", "tflite"], "tflite"),
        (["--iters", "3", "--duration", "1"], "not both"),
        (["--duration", "0"], "--duration"),
        (["--device", "cuda"], "cuda"),
        (["--data", "/nonexistent/folder"], "ir/ and vi/"),
        (["--ir16", "minmax"], "--ir16 minmax: for --data or --video frames"),
        (["--reference", "torch"], "--reference torch"),
        (["--precision", "bf16"], "--precision bf16 is for --backend openvino"),
    ],
)
def test_bad_arguments_are_one_line_errors(models, created, capsys, extra, message):
    args = ["profile", "--model", models["lut.onnx"], "--model", models["lut.engine"], "--iters", "2"]
    if "--iters" in extra or "--duration" in extra:
        args.remove("--iters")
        args.remove("2")
    code, _out, err = run_cli(capsys, *args, *extra)
    assert code != 0
    assert message in err


def test_ir16_maps_a_16bit_data_pair_as_fuse_does(tmp_path):
    """profile --data with a radiometric camera's pair: refused without --ir16, the same 8-bit frame as
    fuse's reader with it."""
    import numpy as np
    from PIL import Image

    from lutfuse_deploy.errors import InputError
    from lutfuse_deploy.io.images import normalise_16bit
    from lutfuse_deploy.profile.inputs import InputSource
    from lutfuse_deploy.profile.timing import Resolution

    for sub in ("ir", "vi"):
        (tmp_path / sub).mkdir()
    ramp = (np.arange(24 * 32, dtype=np.uint16).reshape(24, 32) * 50 + 3000).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "ir" / "a.png")
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(tmp_path / "vi" / "a.png")
    with pytest.raises(InputError, match="16-bit IR"):
        InputSource(tmp_path).frame(Resolution(32, 24))
    ir, _ = InputSource(tmp_path, ir16="percentile").frame(Resolution(32, 24))
    assert np.array_equal(ir, normalise_16bit(ramp, "percentile"))


def test_threads_default_to_the_free_cpus_and_quiet_only_is_recorded(tmp_path, models, created, capsys,
                                                                      monkeypatch):
    from lutfuse_deploy.runtime import cpus

    monkeypatch.setattr(cpus, "available_cpus", lambda: 2)
    monkeypatch.setattr(cpus, "sample_load", lambda seconds=0.1: cpus.Load(1.0, 1.0))  # one busy neighbour
    j = tmp_path / "q.json"
    code, out, _ = run_cli(capsys, "profile", "--model", models["lut.onnx"], "--backend", "onnxruntime,openvino",
                           *FAST, "--quiet-only", "--precision", "bf16", "--json", j)
    assert code == 0
    assert [(b, o) for _, b, o in created] == [("onnxruntime", {"threads": 1, "device": "cpu"}),
                                               ("openvino", {"threads": 1, "device": "cpu", "precision": "bf16"})]
    assert "auto: 2 CPU(s) available, 1.00 busy" in out
    doc = json.loads(j.read_text())
    assert doc["settings"]["quiet_only"] is True and doc["settings"]["threads"] == 1
    assert doc["environment"]["threads"]["auto"].startswith("1 thread(s)")
    assert all(r["samples"] in ("quiet", "all (no quiet round)") for r in doc["results"])


def test_missing_model_file(tmp_path, created, capsys):
    code, _, err = run_cli(capsys, "profile", "--model", tmp_path / "nope.onnx", *FAST)
    assert code == 1 and "no such file" in err and created == []


def test_budgets_that_hold_exit_0(tmp_path, models, created, capsys):
    budget = _budget(
        tmp_path,
        """budgets:
  - {model: lutfuse, backend: torch, resolution: 32x24, p50_ms: 100000, p95_ms: 100000}
  - {model: lutfuse, backend: onnxruntime, resolution: 32x24, ratio_to: {backend: torch, max: 1000}}
""",
    )
    code, out, _ = run_cli(
        capsys, "profile", "--model", models["lut.safetensors"], "--backend", "torch,onnxruntime", *FAST,
        "--budget", budget,
    )  # fmt: skip
    assert code == 0
    assert "all 3 budget checks held" in out


def test_impossible_budget_exits_1_with_a_table(tmp_path, models, created, capsys):
    budget = _budget(
        tmp_path,
        """budgets:
  - {model: lutfuse, backend: torch, resolution: 32x24, p95_ms: 0.000001}
  - {model: lutfuse, backend: onnxruntime, resolution: 32x24, ratio_to: {backend: torch, max: 1000}}
""",
    )
    j = tmp_path / "prof.json"
    code, out, err = run_cli(
        capsys, "profile", "--model", models["lut.safetensors"], "--backend", "torch,onnxruntime", *FAST,
        "--budget", budget, "--json", j,
    )  # fmt: skip
    assert code == 1
    assert "latency budgets" in out and "over" in out and "held" in out
    assert err.strip().splitlines()[-1] == f"error: 1 of 2 budget checks failed ({budget})"
    doc = json.loads(j.read_text())  # the report is still written, with the verdict
    assert doc["budget"]["passed"] is False


def test_unmeasured_budget_exits_1_before_timing(tmp_path, models, created, capsys):
    budget = _budget(
        tmp_path, "budgets:\n  - {model: lutfuse, backend: onnxruntime, resolution: 1280x720, p50_ms: 5}\n"
    )
    code, _, err = run_cli(capsys, "profile", "--model", models["lut.onnx"], *FAST, "--budget", budget)
    assert code == 1
    assert "budgets[0] needs lutfuse/onnxruntime at 1280x720" in err


def test_malformed_budget_exits_1_naming_the_key_without_loading_models(tmp_path, models, created, capsys):
    budget = _budget(
        tmp_path, "budgets:\n  - {model: lutfuse, backend: onnxruntime, resolution: 640x480, p96_ms: 5}\n"
    )
    code, _out, err = run_cli(capsys, "profile", "--model", models["lut.onnx"], *FAST, "--budget", budget)
    assert code == 1
    assert "'p96_ms'" in err and err.startswith("error: ")
    assert created == []


@pytest.mark.parametrize("upstream_found", [True, False])
def test_the_shipped_ci_budget_runs_against_fakes(tmp_path, models, created, capsys, monkeypatch, upstream_found):
    from lutfuse_deploy.profile import session

    def fake_upstream(folder, threads, device):  # the upstream code found (50 ms), or absent with a reason
        if not upstream_found:
            return None, "upstream lane skipped: upstream LUT-Fuse script not found at /nowhere"
        return FakeRunner("calculate.py", backend="upstream", costs_ms=(50.0,)), "upstream lane: calculate.py"

    monkeypatch.setattr(session, "upstream_runner", fake_upstream)
    ci = Path(__file__).resolve().parents[1] / "recipes" / "budgets" / "ci.yaml"
    student_onnx = tmp_path / "student.onnx"
    student_onnx.write_bytes(b"fake")
    fast = tmp_path / "lut-fast.onnx"  # the gate profiles the shipped fast variant too (Makefile)
    lut = tmp_path / "lutfuse.safetensors"  # its budget names the full model in torch as the reference
    for fake in (fast, lut):
        fake.write_bytes(b"fake")
    code, out, err = run_cli(
        capsys, "profile", "--model", lut, "--backend", "torch",
        "--model", models["lut.onnx"], "--backend", "onnxruntime",
        "--model", fast, "--backend", "onnxruntime",
        "--model", models["student.safetensors"], "--backend", "torch",
        "--model", student_onnx, "--backend", "onnxruntime", "--upstream",
        "--iters", "3", "--warmup", "1", "--resolutions", "640x480,1280x720", "--budget", ci,
    )  # fmt: skip
    assert code == 0, err  # fakes: onnxruntime costs 0 ms against a 5 ms torch sleep
    assert "budget checks held" in out
    if upstream_found:
        assert "skipped" not in out and "ratio to upstream" in out
    else:  # the upstream checks are shown as skipped, with the reason, and do not fail the gate
        assert "skipped (reason in their note)" in out and "script not found at /nowhere" in out
