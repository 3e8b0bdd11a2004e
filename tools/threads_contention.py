"""How `fuse` copes with a busy neighbour: ms per pair at --threads 1, 2 and the default, with and
without one other process spinning on a core, and how busy the rest of the machine was meanwhile.

    .venv/bin/python tools/threads_contention.py --ir DIR --vi DIR --model lut.safetensors --backend torch

Each configuration runs `lutfuse-deploy fuse --json` on the first --pairs pairs in a fresh process (as a user would), so import
and load time stay out of the per-pair figure (``mean_model_ms``). The neighbour is
``python -c 'while 1: pass'``, started before and killed after each run. "rest" is the CPU time that
neither fuse nor the neighbour used, per second of wall time: above ~0.1 the numbers are not clean.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lutfuse_deploy.runtime.cpus import TICK_HZ, busy_ticks, process_ticks

CLI = str(Path(sys.executable).with_name("lutfuse-deploy"))


def run_once(args: argparse.Namespace, threads: str, neighbour: bool, out: Path) -> dict[str, float]:
    spin = subprocess.Popen([sys.executable, "-c", "while 1: pass"] if neighbour else ["sleep", "3600"])
    try:
        time.sleep(0.3)  # let the neighbour reach its core first, as a real one would be
        busy0, spin0, t0 = busy_ticks(None), process_ticks(spin.pid), time.perf_counter()
        cmd = [CLI, "fuse", "--model", args.model, "--backend", args.backend, "--ir", args.ir, "--vi", args.vi,
               "--out", str(out), "--json", "--quiet"]
        if threads != "default":
            cmd += ["--threads", threads]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        _, _, usage = os.wait4(proc.pid, 0)
        assert proc.stdout is not None
        summary = json.loads(proc.stdout.read())
        wall = time.perf_counter() - t0
        busy1, spin1 = busy_ticks(None), process_ticks(spin.pid)
    finally:
        spin.kill()
        spin.wait()
    assert None not in (busy0, busy1, spin0, spin1), "needs Linux /proc"
    own = usage.ru_utime + usage.ru_stime
    spun = (spin1 - spin0) / TICK_HZ
    return {"ms_per_pair": summary["mean_model_ms"], "neighbour_cpus": spun / wall,
            "rest_cpus": max(0.0, (busy1 - busy0) / TICK_HZ - own - spun) / wall}


def first_pairs(ir: Path, vi: Path, n: int, tmp: Path) -> tuple[str, str]:
    """Folders holding links to the first ``n`` same-named pairs of ``ir`` and ``vi``."""
    vis = {p.stem: p for p in vi.iterdir()}
    links = tmp / "ir", tmp / "vi"
    for d in links:
        d.mkdir()
    for p in sorted(q for q in ir.iterdir() if q.stem in vis)[:n]:
        (links[0] / p.name).symlink_to(p.resolve())
        (links[1] / vis[p.stem].name).symlink_to(vis[p.stem].resolve())
    return str(links[0]), str(links[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ir", required=True)
    ap.add_argument("--vi", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--backend", default="torch")
    ap.add_argument("--threads", default="1,2,default", help="comma list; 'default' = no --threads")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--pairs", type=int, default=4, help="fuse the first N pairs of the folders (by name)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        args.ir, args.vi = first_pairs(Path(args.ir), Path(args.vi), args.pairs, Path(tmp))
        for rep in range(args.repeats):
            for neighbour in (True, False):
                for threads in args.threads.split(","):
                    r = run_once(args, threads, neighbour, Path(tmp) / f"o{rep}{threads}{neighbour}")
                    print(f"{args.backend:11s} neighbour={'yes' if neighbour else 'no ':3s} threads={threads:7s} "
                          f"{r['ms_per_pair']:8.1f} ms/pair  neighbour {r['neighbour_cpus']:.2f} CPU  "
                          f"rest {r['rest_cpus']:.2f} CPU", flush=True)


if __name__ == "__main__":
    main()
