"""The mutants ``tools/mutation.py`` applies: small, realistic bugs, one per entry.

Each entry is (name, file, old, new, tests, why): ``old`` must occur exactly once in ``file`` and is
replaced by ``new``; ``tests`` are the pytest files (or node ids) that own that code and must fail.
When code moves, re-point ``file`` (and ``tests``); the runner reports an entry whose snippet is no
longer found as stale. Fuse-pipeline entries come last (that code moved to ``fuse/`` once already).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]
    why: str


IO = ("tests/test_guards_io.py", "tests/test_conventions.py")
ENG = ("tests/test_guards_engines.py", "tests/test_engines_manifest.py", "tests/test_engines_targets.py",
       "tests/test_engines_precision.py")
CAL = ("tests/test_guards_engines.py", "tests/test_engines_calibration.py")
GATE = ("tests/test_guards_gate.py", "tests/test_profile_gate.py")
EXP = ("tests/test_guards_export.py",)
CONV = ("tests/test_conventions.py", "tests/test_metrics.py")
FUSE = ("tests/test_guards_fuse.py",)
RIG = ("tests/test_guards_rig.py", "tests/test_rig_file.py")
REC = ("tests/test_guards_recipes.py",)

_IMG = "lutfuse_deploy/io/images.py"
_FILES = "lutfuse_deploy/io/files.py"
_CKPT = "lutfuse_deploy/io/checkpoints.py"
_MEM = "lutfuse_deploy/runtime/memory.py"
_MAN = "lutfuse_deploy/engines/manifest.py"
_TGT = "lutfuse_deploy/engines/targets.py"
_BLD = "lutfuse_deploy/engines/build.py"
_PRC = "lutfuse_deploy/engines/precision.py"
_CAL = "lutfuse_deploy/engines/calibration.py"
_GATE = "lutfuse_deploy/profile/gate.py"
_ONNX = "lutfuse_deploy/export/onnx.py"
_GRAPH = "lutfuse_deploy/export/graph.py"
_CHK = "lutfuse_deploy/export/checks.py"
_PAR = "lutfuse_deploy/export/parity.py"
_FUS = "lutfuse_deploy/metrics/fusion.py"
_LUT = "lutfuse_deploy/models/lut.py"
_RTT = "lutfuse_deploy/runtime/torch.py"
_CONV = "lutfuse_deploy/fuse/convert.py"
_SINKS = "lutfuse_deploy/fuse/sinks.py"
_SRC = "lutfuse_deploy/fuse/sources.py"
_PIPE = "lutfuse_deploy/fuse/pipeline.py"
_PAIR = "lutfuse_deploy/fuse/pairing.py"
_BASE = "lutfuse_deploy/runtime/base.py"
_VIDEO = "lutfuse_deploy/io/video.py"
_PLAN = "lutfuse_deploy/fuse/plan.py"
_RIGF = "lutfuse_deploy/rig/file.py"
_REC = "lutfuse_deploy/train/config.py"
_RIGP = "lutfuse_deploy/rig/points.py"

M = Mutant
MUTANTS: list[Mutant] = [
    # -- io/ --------------------------------------------------------------------------------------
    M("ir16-linear-65536", _IMG, "y = x * (255.0 / 65535.0)", "y = x * (255.0 / 65536.0)", IO,
      "--ir16 linear divides by 2^16 instead of the 16-bit maximum"),
    M("ir16-floor", _IMG, "return np.clip(np.rint(y), 0, 255).astype(np.uint8)",
      "return np.clip(np.floor(y), 0, 255).astype(np.uint8)", IO, "16-bit to 8-bit truncates instead of rounding"),
    M("ir16-percentile-range", _IMG, "np.percentile(x, [1.0, 99.0])", "np.percentile(x, [0.0, 100.0])", IO,
      "--ir16 percentile stretches min-max (a hot spot darkens the frame)"),
    M("ir16-minmax-as-percentile", _IMG, 'if mode == "minmax" else', 'if mode == "linear" else', IO,
      "--ir16 minmax takes the percentile branch"),
    M("ir16-refuse-dropped", _IMG, 'if ir16 == "refuse":\n            raise',
      'if ir16 == "never":\n            raise', IO, "16-bit IR read without asking for a conversion"),
    M("ir-rgb-red-channel", _IMG, 'return np.asarray(img.convert("L"), dtype=np.uint8)',
      'return np.asarray(img.convert("RGB"), dtype=np.uint8)[..., 0]', IO,
      "RGB-stored IR takes the red channel instead of PIL's luma"),
    M("vi-gray-mode-luma", _IMG, 'rgb if mode == "RGB" else rgb.convert("L")',
      'rgb if mode != "L" else rgb.convert("1")', IO, "gray visible read as 1-bit"),
    M("pair-min-side", _IMG, "if min(ir.shape[:2]) < MIN_SIDE:", "if min(ir.shape[:2]) <= MIN_SIDE:", IO,
      "a 3x3 pair is refused (off by one)"),
    M("pair-size-mismatch-dropped", _IMG, "if ir.shape[:2] != vi.shape[:2]:", "if ir.shape[0] != vi.shape[0]:", IO,
      "pairs whose widths differ are accepted"),
    M("find-pairs-mixed-kinds", _IMG, "if ir.is_dir() != vi.is_dir():", "if ir.is_dir() and not vi.is_dir():", IO,
      "--ir FILE --vi DIR is not refused"),
    M("outputs-samefile-dropped", _FILES, "if os.path.samefile(out, inp):", "if out == inp:", IO,
      "an output reached through another path (symlink, ./) overwrites its input"),
    M("outputs-blocker-dropped", _FILES, "return None if parent.is_dir() else parent", "return None", IO,
      "an output below a file is not refused before work"),
    M("atomic-tmp-left", _FILES, "        if tmp_path.exists():\n            tmp_path.unlink()",
      "        pass", IO, "a failed write leaves its temporary file behind"),
    M("ckpt-sha-dropped", _CKPT, "if weights_sha256(state) != meta.get(\"weights_sha256\"):",
      "if not meta.get(\"weights_sha256\"):", IO, "edited weights load without a word"),
    M("ckpt-nonfinite-dropped", _CKPT, "if t.is_floating_point() and not torch.isfinite(t).all():",
      "if t.is_floating_point() and torch.isnan(t).all():", IO, "a checkpoint with inf/NaN entries loads"),
    # -- runtime/memory.py ------------------------------------------------------------------------
    M("memory-boundary", _MEM, "need <= have", "need < have", IO, "a run needing exactly what is free is refused"),
    M("memory-megapixel", _MEM, "per_mp * width * height / 1e6", "per_mp * width * height / 2**20", IO,
      "megapixels counted as 2^20 pixels: the estimate is 5 % low"),
    M("memory-cgroup-max", _MEM, "min(avail, room)", "max(avail, room)", IO,
      "a container's limit does not cap the host's free memory"),
    M("memory-largest-by-width", _MEM, "size[0] * size[1] > best[0] * best[1]", "size[0] > best[0]", IO,
      "the largest image is picked by width, not pixels"),
    M("memory-device-tensorrt", _MEM, '("cuda" if backend == "tensorrt" else "cpu")', '"cpu"', IO,
      "TensorRT runs are checked against host memory"),
    # -- engines/ ---------------------------------------------------------------------------------
    M("manifest-trt-major-minor", _MAN, 'return a.split(".")[:3] == b.split(".")[:3]',
      'return a.split(".")[:2] == b.split(".")[:2]', ENG,
      "TensorRT 10.3.1 accepted for an engine built with 10.3.0.30"),
    M("manifest-vc-strict", _MAN, "return _version(tensorrt_version) >= _version(built)",
      "return _version(tensorrt_version) > _version(built)", ENG,
      "a version-compatible engine refused by its own TensorRT version"),
    M("manifest-vc-major-minor", _MAN, 'return tuple(int(p) for p in text.split(".")[:3] if p.isdigit())',
      'return tuple(int(p) for p in text.split(".")[:2] if p.isdigit())', ENG,
      "version-compatible check ignores the patch level (10.3.0 loads a 10.3.1 engine)"),
    M("manifest-ampere-boundary", _MAN, "return _cc(compute_capability) >= (8, 0)",
      "return _cc(compute_capability) > (8, 0)", ENG, "an ampere+ engine refused on sm 8.0"),
    M("manifest-reuse-trt-dropped", _MAN, "if want_trt and not _same_version(", "if False and not _same_version(",
      ENG, "an engine built by another TensorRT is reused"),
    M("manifest-engine-sha-dropped", _MAN, "if sha256_file(engine) != want:", "if not want:", ENG,
      "a swapped engine file loads"),
    M("targets-min-side", _TGT, "if h < 3 or w < 3:", "if h < 3 or w < 2:", ENG, "a 2-pixel-wide profile accepted"),
    M("targets-opt-order", _TGT, "if not lo[axis] <= opt[axis] <= hi[axis]:",
      "if not lo[axis] <= opt[axis] <= hi[axis] or lo[axis] == opt[axis]:", ENG,
      "MIN == OPT refused (static-at-the-bottom profiles)"),
    M("targets-contains-strict", _TGT, "return self.min[0] <= h <= self.max[0]", "return self.min[0] <= h < self.max[0]",
      ENG, "an image exactly at the profile's maximum height is outside it"),
    M("targets-gib", _TGT, "return min(self.memory_gb) * 1e9 / (1 << 30)", "return min(self.memory_gb)", ENG,
      "GB taken as GiB: 7 % more memory than the device has"),
    M("targets-trt-min-unchecked", _TGT, "if v.get(\"tensorrt_min\") and not re.fullmatch",
      "if False and not re.fullmatch", ENG, "a tensorrt_min of another major is accepted"),
    M("targets-dla-negative", _TGT, 'if v.get("dla_cores", 0) < 0:', 'if v.get("dla_cores", 0) < -1:', ENG,
      "dla_cores -1 accepted"),
    M("targets-match-trt-major", "lutfuse_deploy/engines/local_gpu.py", "t.tensorrt_major == tensorrt_major]", "t.tensorrt_major >= 10]", ENG,
      "--target auto does not use the installed TensorRT major to pick between same-GPU targets"),
    M("build-trt-min-boundary", _BLD, "version_tuple(version) < version_tuple(target.tensorrt_min)",
      "version_tuple(version) <= version_tuple(target.tensorrt_min)", ENG,
      "a device with exactly the minimum TensorRT refused"),
    M("build-need-boundary", _BLD, "if memory is not None and need >= memory:", "if memory is not None and need > memory:",
      ENG, "a workspace need equal to the device memory accepted"),
    M("build-derived-cap", _BLD, "if memory is not None and req.workspace_gib is None and derived >= memory:",
      "if memory is not None and req.workspace_gib is None and derived > memory:", ENG,
      "a derived workspace equal to the device memory kept"),
    M("build-workspace-boundary", _BLD, "if memory is not None and req.workspace_gib >= memory:",
      "if memory is not None and req.workspace_gib > memory:", ENG, "--workspace equal to the memory accepted"),
    M("build-workspace-floor", _BLD, "-(-gib * 4 // 1) / 4", "(gib * 4 // 1) / 4", ENG,
      "derived workspace rounded down to a quarter GiB (below the need)"),
    M("build-replace-shapes", _BLD, 'if old is None or force or old.get("shapes") == wanted.get("shapes"):',
      "if old is None or force or True:", ENG, "a bundle for other shapes replaced without --force"),
    M("precision-dla-core-range", _PRC, "if not 0 <= dla_core < target.dla_cores:",
      "if not 0 <= dla_core <= target.dla_cores:", ENG, "--dla N accepted on a target with N cores"),
    M("precision-trt11-boundary", _PRC, "if tensorrt_major >= 11:", "if tensorrt_major > 11:", ENG,
      "TensorRT 11 planned with TensorRT 10's implicit precisions"),
    M("precision-qdq-without-int8", _PRC, "if qdq and not wants_int8:", "if qdq and precision == \"fp32\":", ENG,
      "--qdq accepted with --precision fp16"),
    M("calib-resize-swapped", _CAL, "Image.fromarray(ir).resize((iw, ih), Image.Resampling.BILINEAR)",
      "Image.fromarray(ir).resize((ih, iw), Image.Resampling.BILINEAR)", CAL,
      "calibration IR resized to H x W transposed"),
    M("calib-channel-order", _CAL, "vis.append(v.transpose(2, 0, 1) if v.ndim == 3 else v[None])",
      "vis.append(v.transpose(2, 1, 0) if v.ndim == 3 else v[None])", CAL,
      "calibration visible images stored W x H"),
    M("calib-npz-size-dropped", _CAL, "if tuple(arr.shape[2:]) != tuple(want):",
      "if len(arr.shape[2:]) != len(want):", CAL, "a calibration npz of another size accepted"),
    M("calib-list-comment", _CAL, 'line = raw.split("#", 1)[0].strip()', "line = raw.strip()", CAL,
      "a comment after a calibration pair breaks the line"),
    # -- profile/gate.py --------------------------------------------------------------------------
    M("gate-limit-strict", _GATE, '"held" if value <= limit else "over", _caveats(m, key)',
      '"held" if value < limit else "over", _caveats(m, key)', GATE, "a p50 exactly at its limit fails"),
    M("gate-ratio-strict", _GATE, '"held" if value <= r.max else "over", note', '"held" if value < r.max else "over", note',
      GATE, "a ratio exactly at max fails"),
    M("gate-ratio-inverted", _GATE, "value = _stat(m, r.stat) / ref if ref > 0", "value = ref / _stat(m, r.stat) if ref > 0",
      GATE, "ratio computed reference / this"),
    M("gate-ratio-self", _GATE, "refs = [x for x in refs if x is not m]", "refs = list(refs)", GATE,
      "a budget's own result counted as its reference"),
    M("gate-ratio-mode-default", _GATE, "r.mode or b.mode, r.artifact)", "r.mode or \"e2e\", r.artifact)", GATE,
      "ratio_to without mode compares a device-mode budget with an e2e reference"),
    M("gate-ratio-stat", _GATE, "value = _stat(m, r.stat) / ref", "value = _stat(m, \"p50\") / ref", GATE,
      "ratio_to.stat ignored for the measured side"),
    M("gate-positive-zero", _GATE, "or value <= 0:", "or value < 0:", GATE, "a limit of 0 ms accepted"),
    M("gate-empty-held", _GATE, "return any(c.held for c in checks) and not any(c.failed for c in checks)",
      "return not any(c.failed for c in checks)", GATE, "no checks at all counts as a pass"),
    M("gate-artifact-name", _GATE, "Path(r.artifact).name == artifact or r.artifact == artifact",
      "r.artifact == artifact", GATE, "artifact: by file name no longer matches a result with a folder path"),
    M("gate-unplannable-ratio", _GATE, "needs = [(b.model, b.backend)] + ([(b.model, b.ratio.backend)] if b.ratio else [])",
      "needs = [(b.model, b.backend)]", GATE, "a run missing the ratio's reference backend is not refused up front"),
    # -- export/ ----------------------------------------------------------------------------------
    M("graph-uint8-floor", _GRAPH, "return torch.clamp(torch.round(out * 255.0), 0.0, 255.0).to(torch.uint8)",
      "return torch.clamp(torch.floor(out * 255.0), 0.0, 255.0).to(torch.uint8)", EXP,
      "the uint8 graph truncates instead of rounding to nearest"),
    M("graph-uint8-half-up", _GRAPH, "return torch.clamp(torch.round(out * 255.0), 0.0, 255.0).to(torch.uint8)",
      "return torch.clamp(torch.floor(out * 255.0 + 0.5), 0.0, 255.0).to(torch.uint8)", EXP,
      "the uint8 graph rounds ties up instead of to even (differs from the other backends)"),
    M("parity-uint8-floor", _PAR, "return np.clip(np.rint(fused * 255.0), 0, 255).astype(np.uint8)",
      "return np.clip(np.floor(fused * 255.0), 0, 255).astype(np.uint8)", EXP,
      "the parity reference truncates to uint8"),
    M("runtime-uint8-floor", _RTT, "return np.clip(np.rint(fused * 255.0), 0, 255).astype(np.uint8)",
      "return np.clip((fused * 255.0).astype(np.int64), 0, 255).astype(np.uint8)", EXP,
      "the torch runner's uint8 io truncates"),
    M("export-opset-min", _ONNX, "if not MIN_OPSET <= opset <= top:", "if not MIN_OPSET < opset <= top:", EXP,
      "the lowest supported opset refused"),
    M("export-opset-max", _ONNX, "if not MIN_OPSET <= opset <= top:", "if not MIN_OPSET <= opset <= top + 1:", EXP,
      "an opset above the exporter's maximum accepted"),
    M("export-min-side", _ONNX, "if min(height, width) < 3:", "if min(height, width) < 2:", EXP,
      "a 2-pixel graph accepted"),
    M("export-multiple-width", _ONNX, "if height % multiple or width % multiple:", "if height % multiple:", EXP,
      "an odd width accepted for the teacher"),
    M("export-half-size", _ONNX, 'raise ExportError("give both --height and --width, or --dynamic")',
      "pass", EXP, "--height without --width accepted"),
    M("checks-int32-boundary", _CHK, "abs(nh.to_array(t)).max() > INT32_MAX", "abs(nh.to_array(t)).max() >= INT32_MAX",
      EXP, "an int64 constant of exactly 2^31-1 refused"),
    # -- numerical conventions (models, metrics) ----------------------------------------------------
    M("ycbcr-r-cr", _LUT, "CHROMA_TO_RGB = ((1.402, 0.0)", "CHROMA_TO_RGB = ((1.403, 0.0)", CONV,
      "R = Y + 1.403 Cr"),
    M("ycbcr-g-cb", _LUT, "(-0.714136, -0.344136)", "(-0.714136, -0.344)", CONV, "G's Cb weight rounded"),
    M("ycbcr-cb-g", _LUT, "CB = (-0.168736, -0.331264, 0.5)", "CB = (-0.168736, -0.331, 0.5)", CONV,
      "Cb's G weight rounded"),
    M("luma-weights", _LUT, "LUMA = (0.299, 0.587, 0.114)", "LUMA = (0.2126, 0.7152, 0.0722)", CONV,
      "BT.709 luma instead of BT.601"),
    M("ssim-cov-population", _FUS, "cov_norm = npix / (npix - 1)", "cov_norm = 1.0", CONV,
      "SSIM with population covariance (skimage uses the sample one)"),
    M("ssim-c2", _FUS, "_SSIM_K2 = 0.03", "_SSIM_K2 = 0.01", CONV, "SSIM's K2 constant wrong"),
    M("gray-no-rounding", _FUS, "+ 0x8000) >> 16", ") >> 16", CONV, "PIL luma truncated instead of rounded half up"),
    M("sd-sample", _FUS, "return float(np.std(_as_image(f, \"fused\")))",
      "return float(np.std(_as_image(f, \"fused\"), ddof=1))", CONV, "SD with ddof 1"),
    M("psnr-peak-255", _FUS, "peak_sq = float(np.max(f)) ** 2", "peak_sq = 255.0 ** 2", CONV,
      "PSNR's peak 255 instead of max(F)"),
    M("mi-bits", _FUS, "mi = float(np.sum(pxy * np.log(pxy / (px[rows] * py[cols]))))",
      "mi = float(np.sum(pxy * np.log2(pxy / (px[rows] * py[cols]))))", CONV, "MI in bits instead of nats"),
    M("sf-mean-support", _FUS, "float(np.mean(np.diff(x, axis=1) ** 2))",
      "float(np.sum(np.diff(x, axis=1) ** 2)) / x.size", CONV, "SF's row term averaged over all pixels"),
    M("ag-no-half", _FUS, "np.sqrt((gx * gx + gy * gy) / 2.0)", "np.sqrt(gx * gx + gy * gy)", CONV,
      "AG without the 1/2"),
    # -- second batch, written after the tests above and run before any new test was written for it
    M("listing-hidden-files", _IMG, 'if p.name.startswith(".") or p.is_dir():', "if p.is_dir():", IO,
      "hidden files (.DS_Store) reported as unpaired images"),
    M("pairs-suffix-case", _IMG, "if c.suffix.lower() not in IMAGE_EXTS:", "if c.suffix not in IMAGE_EXTS:", IO,
      "IMG_0001.JPG refused as not an image"),
    M("outputs-folder-is-file", _FILES, "if is_dir and not out.is_dir():", "if False:", IO,
      "an output folder that is an existing file not refused before work"),
    M("atomic-mode-0600", _FILES, "os.chmod(tmp_path, 0o666 & ~umask)", "os.chmod(tmp_path, 0o600)", IO,
      "outputs readable by their owner only"),
    M("memory-cgroup-max-text", _MEM, "return int(text) if text.isdigit() else None",
      "return int(text) if text else None", IO, "cgroup v2's 'max' (no limit) crashes the estimate"),
    M("manifest-missing-keys", _MAN, "    if missing:\n", "    if False:\n", ENG,
      "a manifest without tensorrt_version is read and fails later with a KeyError"),
    M("manifest-sidecar-only", _MAN, "return side if side.is_file() else engine.parent / MANIFEST_NAME", "return side",
      ENG, "an engine in a bundle folder (manifest.json) is not found"),
    M("targets-bool-as-int", _TGT, "if not isinstance(value, want) or (want is int and isinstance(value, bool)):",
      "if not isinstance(value, want):", ENG, "tensorrt_major: true accepted as 1"),
    M("targets-memory-zero", _TGT, "or not isinstance(m, (int, float)) or m <= 0:", "or not isinstance(m, (int, float)) or m < 0:",
      ENG, "memory_gb 0 accepted"),
    M("targets-workspace-zero", _TGT, 'if v.get("workspace_gib", 1.0) <= 0:', 'if v.get("workspace_gib", 1.0) < 0:', ENG,
      "workspace_gib 0 accepted"),
    M("precision-trt12", _PRC, "if tensorrt_major not in (10, 11):", "if tensorrt_major not in (10, 11, 12):", ENG,
      "an unknown TensorRT major planned like TensorRT 11"),
    M("precision-dla-best", _PRC, 'if precision not in ("fp16", "int8"):', 'if precision not in ("fp16", "int8", "best"):',
      ENG, "--dla with --precision best accepted"),
    M("build-dla-dynamic-default", _BLD, "if req.dla_core is None or shapes.is_static:", "if req.dla_core is None or True:",
      ENG, "a DLA build keeps the target's dynamic profile (every layer falls back to the GPU)"),
    M("calib-npz-ir-channels", _CAL, "if ir.shape[1] != 1 or vi.shape[1]", "if vi.shape[1]", CAL,
      "a 3-channel IR calibration array accepted"),
    M("gate-mode-ignored", _GATE, "        and r.mode == mode\n", "", GATE,
      "a device-mode budget matched by an e2e result"),
    M("gate-contention-twice", _GATE, "if contention and m.contended_rounds:", "if m.contended_rounds:", GATE,
      "a ratio's note names the contended rounds twice"),
    M("export-dynamic-and-static", _ONNX, "if height is not None and dynamic:", "if height is None and dynamic:", EXP,
      "--dynamic with --height/--width accepted"),
    # -- train/config.py: recipe checks (fourth batch, written with their tests) -------------------------
    M("recipe-val-crop-odd", _REC, 'if r.val.crop % 2:\n        raise ConfigError(f"{source}: val.crop: must be even',
      'if False:\n        raise ConfigError(f"{source}: val.crop: must be even', REC, "an odd val.crop accepted"),
    M("recipe-data-crop-teacher-only", _REC, "if r.data.crop % 2:", 'if r.data.crop % 2 and r.kind == "teacher":', REC,
      "an odd training crop accepted for lut and mini recipes"),
    M("recipe-val-crop-zero", _REC, "if 0 < r.val.crop < VIF_MIN_SIDE:", "if 0 <= r.val.crop < VIF_MIN_SIDE:", REC,
      "val.crop 0 (the whole image) refused"),
    M("recipe-val-crop-vif-dropped", _REC, "if 0 < r.val.crop < VIF_MIN_SIDE:", "if 0 < r.val.crop < 16:", REC,
      "a validation crop too small for 4-scale VIF accepted (validation fails hours into training)"),
    M("recipe-holdout-root", _REC, "if r.data.holdout and r.val.root:", "if r.data.holdout > 1 and r.val.root:", REC,
      "data.holdout 1 with val.root accepted"),
    M("recipe-flat-edge-zero", _REC, "r.loss.flat_edge <= 0:", "r.loss.flat_edge < 0:", REC,
      "flat_detail on with flat_edge 0 accepted (no pixel is flat)"),
    M("recipe-lo-strict", _REC, "if lo is not None and value < lo:", "if lo is not None and value <= lo:", REC,
      "a value exactly at its lower bound (data.crop 16) refused"),
    M("recipe-hi-strict", _REC, "if hi is not None and value > hi:", "if hi is not None and value >= hi:", REC,
      "a value exactly at its upper bound (flat_edge 1.0) refused"),
    M("recipe-bool-as-int", _REC, "if isinstance(value, bool) or not isinstance(value, int):",
      "if not isinstance(value, int):", REC, "steps: true accepted as 1"),
    M("recipe-nonfinite", _REC, "if not math.isfinite(value):", "if math.isnan(value):", REC, "lr: .inf accepted"),
    # -- rig/ (third batch: run against tests/test_rig_file.py before tests/test_guards_rig.py existed)
    M("rig-size-min", _RIGF, "if min(value) < MIN_SIDE:", "if min(value) <= MIN_SIDE:", RIG,
      "a 3x3 camera refused (off by one)"),
    M("rig-coverage-boundary", _RIGF, "if rig.coverage() < MIN_COVERAGE:", "if rig.coverage() <= MIN_COVERAGE:", RIG,
      "an IR frame covering exactly 5 % of the visible one refused"),
    M("rig-coverage-constant", _RIGF, "MIN_COVERAGE = 0.05", "MIN_COVERAGE = 0.005", RIG,
      "a rig whose IR covers 1 % of the visible frame (sizes swapped) accepted"),
    M("rig-mirror-dropped", _RIGF, "if np.linalg.det(h) / third[0] ** 3 <= 0:", "if False:", RIG,
      "a mirrored homography accepted"),
    M("rig-fold-one-side", _RIGF, "if not ((third > 0).all() or (third < 0).all()):", "if not (third > 0).any():", RIG,
      "a homography sending part of the IR frame to infinity accepted"),
    M("rig-overlap-side", _RIGF, "if min(w, h) < MIN_OVERLAP_SIDE:", "if min(w, h) <= MIN_OVERLAP_SIDE:", RIG,
      "an 8-pixel overlap box refused"),
    M("rig-overlap-floor", _RIGF, "x0 = max(0, math.ceil(max(tl[0], bl[0])))", "x0 = max(0, math.floor(max(tl[0], bl[0])))",
      RIG, "the overlap box starts one pixel left of the IR frame"),
    M("rig-coverage-box", _RIGF, "-0.5, -0.5, vw - 0.5, vh - 0.5", "0, 0, vw - 1, vh - 1", RIG,
      "coverage clipped to pixel centres instead of the frame's edges"),
    M("rig-normalise-sign", _RIGF, "return h / h[2, 2]", "return h / abs(h[2, 2])", RIG,
      "a homography written with H22 = -1 keeps its sign"),
    M("points-min", _RIGP, "if len(points) < MIN_POINTS:", "if len(points) <= MIN_POINTS:", RIG,
      "exactly four point pairs refused"),
    M("points-inside-centres", _RIGP, "-0.5 <= x <= w - 0.5 and -0.5 <= y <= h - 0.5", "0 <= x <= w - 1 and 0 <= y <= h - 1",
      RIG, "a click on the outer half of an edge pixel refused"),
    M("points-collinear-dropped", _RIGP, "if s[0] < 1e-9 or s[-1] / s[0] < COLLINEAR:", "if s[0] < 1e-9:", RIG,
      "points on one line reach the fit"),
    M("points-outlier-strict", _RIGP, "axis=1) <= OUTLIER_PX", "axis=1) < OUTLIER_PX / 2", RIG,
      "a 3 px click (sloppy, not wrong) dropped as an outlier"),
    # -- fuse pipeline (being restructured: re-point these) -----------------------------------------
    M("to8bit-lut-floor", _CONV, "return np.clip(np.rint(fused.transpose(1, 2, 0) * 255.0), 0, 255).astype(np.uint8)",
      "return np.clip(np.floor(fused.transpose(1, 2, 0) * 255.0), 0, 255).astype(np.uint8)", FUSE,
      "LUT-Fuse PNGs truncated instead of rounded"),
    M("to8bit-minmax-offset", _CONV, "t = (t - lo) / (hi - lo) if hi > lo else np.zeros_like(t)",
      "t = (t - lo) / hi if hi > lo else np.zeros_like(t)", FUSE, "MMDRFuse min-max stretch divides by max, not range"),
    M("to8bit-clip-as-minmax", _CONV, 'if tanh_map == "minmax":', 'if tanh_map != "never":', FUSE,
      "--tanh-to-8bit clip stretches like minmax"),
    M("prepare-gray-replicated", _CONV, "vi_chw = vi.transpose(2, 0, 1) if vi.ndim == 3 else vi[None]",
      "vi_chw = vi.transpose(2, 1, 0) if vi.ndim == 3 else vi[None]", FUSE, "visible batch laid out W x H"),
    M("plan-outputs-many-to-file", _SINKS, "if len(pairs) != 1:", "if len(pairs) > 2:", FUSE,
      "--out NAME.png with two pairs writes the second over the first"),
    M("save-float-uint8", _PIPE, 'if save_float and runner.io == "uint8":', "if save_float and runner.io == \"int8\":",
      FUSE, "--save-float with a uint8 model writes integer 'raw' output"),
    M("source-min-side", _SRC, "if min(ir_wh + vi_wh) < MIN_SIDE:", "if min(ir_wh + vi_wh) <= MIN_SIDE:", FUSE,
      "a 3x3 pair in a folder is refused (off by one)"),
    M("source-size-check-dropped", _SRC, 'if why is not None:\n                raise InputError(f"{pair.name}: size mismatch',
      'if False:\n                raise InputError(f"{pair.name}: size mismatch', FUSE,
      "a folder pair of different sizes reaches the model"),
    M("video-out-is-input", _PIPE, "if out.resolve() in (source.ir.path.resolve(), source.vi.path.resolve()):",
      "if out.resolve() == source.vi.path.resolve():", FUSE, "fuse --out ir.mp4 overwrites the IR input"),
    M("video-rate-tolerance", _SRC, "abs(ir.rate - vi.rate) > ir.rate / 1000", "abs(ir.rate - vi.rate) > ir.rate / 100",
      FUSE, "25 vs 25.2 fps paired frame by frame"),
    M("same-size-width-only", _BASE, "return None if ir == vi else", "return None if ir[0] == vi[0] else",
      FUSE, "IR and visible streams or images of different heights accepted"),
    M("video-trim-dropped", _PIPE, "if summary.leftover and not opts.trim:", "if summary.leftover and opts.trim:",
      FUSE, "streams of different lengths written without --trim"),
    M("pair-time-previous", _PAIR, "abs(nxt[1][0] - t) < abs(cur[1][0] - t)", "nxt[1][0] <= t", FUSE,
      "timestamp pairing takes the previous frame, not the nearest"),
    M("pair-time-window", _PAIR, "if cur is None or abs(cur[1][0] - t) >= other_period:",
      "if cur is None or abs(cur[1][0] - t) > 2 * other_period:", FUSE,
      "a lead frame two periods from any other frame is still paired"),
    M("pair-index-tail", _PAIR, "stats.vi_left = list(range(stats.pairs, stats.pairs + n_vi))",
      "stats.vi_left = []", FUSE, "a longer visible stream's tail is not reported"),
    M("video-ir16-refuse", _VIDEO, 'if ir16 == "refuse":\n            raise',
      'if ir16 == "never":\n            raise', FUSE, "gray16 IR video fused without --ir16"),
    M("bitrate-units", _VIDEO, 'units = {"k": 1_000, "m": 1_000_000}', 'units = {"k": 1_024, "m": 1_048_576}', FUSE,
      "--bitrate 4M taken as 4 MiB/s"),
    M("video-mixed-refused", _PLAN, "if not all(flags.values()):", "if not flags[\"--out\"]:", FUSE,
      "--ir a.mp4 --vi b.png --out c.mp4 not refused"),
    # second batch (fuse pipeline)
    M("video-rate-unknown", _SRC, "        if v.rate is None:\n", "        if False:\n", FUSE,
      "--resample-to with a stream of unknown rate fails later with a TypeError"),
    M("writer-odd-height", _VIDEO, "even = width % 2 == 0 and height % 2 == 0", "even = width % 2 == 0", FUSE,
      "an odd-height video gets yuv420p (the encoder refuses it)"),
    # session 9: rig graphs in reduced precision, 16-bit IR in calibration and training, fine-tuning
    M("guard-warp-as-lookup", _PRC, "warps = [n for n in samplers if n.inputs and _reaches_image_input(",
      "warps = [n for n in samplers if False and _reaches_image_input(",
      ("tests/test_engines_tensorrt.py::test_network_nodes_map_layer_types_for_the_fp32_guard",
       "tests/test_rig_graph.py::test_reduced_precision_keeps_only_the_warp_and_the_lookup_in_fp32"),
      "a rig's warp counted as a lookup: the whole model after it pinned to FP32"),
    M("calib-rig-ir-size", _CAL, "ih, iw = ir_hw or hw", "ih, iw = hw",
      ("tests/test_rig_graph.py::test_int8_calibration_keeps_each_camera_size",),
      "a rig graph's IR calibration frames resized to the visible camera's size"),
    M("calib-ir16-dropped", _CAL, "load_pair(pair, vi_mode=mode, ir16=ir16)", "load_pair(pair, vi_mode=mode)",
      ("tests/test_engines_cli.py::test_calibration_images_with_16bit_ir_need_and_take_ir16",),
      "build-engine --ir16 ignored for calibration images"),
    M("train-ir16-dropped", "lutfuse_deploy/train/data.py",
      'self._cache = [load_pair(p, vi_mode="RGB", ir16=ir16) for p in pairs]',
      'self._cache = [load_pair(p, vi_mode="RGB") for p in pairs]',
      ("tests/test_train_run.py::test_16bit_ir_sets_train_with_ir16_only",), "train --ir16 ignored for training pairs"),
    M("finetune-start-ignored", "lutfuse_deploy/train/mini.py", "    student.load_state_dict(model.state_dict())\n",
      "", ("tests/test_train_run.py::test_mini_fine_tunes_a_trained_student",),
      "loss.init: checkpoint trains from torch's random init"),
]
