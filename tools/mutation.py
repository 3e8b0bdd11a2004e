"""Hand-written mutation audit: apply each small, realistic bug from ``tools/mutants.py`` to a copy
of the tree, run the tests that should catch it, and print killed/survived with a score.

Run by hand, not in ``make test`` (a full run takes minutes)::

    .venv/bin/python tools/mutation.py              # every mutant, 2 workers
    .venv/bin/python tools/mutation.py --list       # the mutants, nothing run
    .venv/bin/python tools/mutation.py --only manifest-trt-major-minor gate-limit-strict

Why a list of hand patches and not mutmut or cosmic-ray: those generate thousands of operator swaps
over every line (most equivalent or irrelevant) and need one full test run per mutant; a list of
bugs someone could plausibly write, each paired with the test files that own the code, runs in
minutes on two cores and reads as a specification of what the suite must catch.

The tree is copied once per worker into a temporary folder (the working tree is never edited:
other processes import the package from it), each mutant is written into the copy, its tests run
with ``LUTFUSE_DATA`` pointing at a missing folder (so a kill never depends on the shared data;
``--with-data`` lifts that), and the file is restored. A mutant whose ``old`` snippet no longer
occurs exactly once is reported as stale (the code moved: re-point the entry) and fails the run.
A test run that exceeds ``--timeout`` counts as killed (the bug hangs the code).
"""

from __future__ import annotations

import argparse
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from mutants import MUTANTS, Mutant  # noqa: E402


@dataclass
class Outcome:
    mutant: Mutant
    status: str  # killed | survived | timeout | stale
    seconds: float
    detail: str = ""

    @property
    def killed(self) -> bool:
        return self.status in ("killed", "timeout")


def tree_files() -> list[str]:
    """Tracked files plus untracked ones git does not ignore (new tests before their commit)."""
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                         capture_output=True).stdout.decode()
    return [f for f in out.split("\0") if f and (ROOT / f).is_file()]


def copy_tree(dest: Path, files: list[str]) -> None:
    for rel in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)


def stale_reason(m: Mutant) -> str | None:
    path = ROOT / m.file
    if not path.is_file():
        return f"{m.file}: no such file"
    count = path.read_text(encoding="utf-8").count(m.old)
    if count != 1:
        return f"{m.file}: the old snippet occurs {count} times (expected once)"
    missing = [t for t in m.tests if not (ROOT / t.split("::")[0]).is_file()]
    if missing:
        return f"no such test file {missing[0]}"
    return None


def run_tests(copy: Path, tests: tuple[str, ...], timeout: float, with_data: bool) -> tuple[int | None, str]:
    """pytest's exit status on ``tests`` in ``copy`` (None on timeout) and its last lines."""
    env = dict(os.environ, PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1")
    if not with_data:
        env["LUTFUSE_DATA"] = str(copy / "no-shared-data")
        env.pop("LUTFUSE_REFERENCE", None)
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--no-header", *tests]
    try:
        proc = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, ""
    tail = [ln for ln in proc.stdout.splitlines() if ln.strip()][-1:] if proc.stdout else []
    return proc.returncode, " ".join(tail)


def run_mutant(copy: Path, m: Mutant, timeout: float, with_data: bool) -> Outcome:
    target = copy / m.file
    original = target.read_text(encoding="utf-8")
    t0 = time.perf_counter()
    target.write_text(original.replace(m.old, m.new, 1), encoding="utf-8")
    try:
        rc, tail = run_tests(copy, m.tests, timeout, with_data)
    finally:
        target.write_text(original, encoding="utf-8")
    dt = time.perf_counter() - t0
    if rc is None:
        return Outcome(m, "timeout", dt, f"no result in {timeout:g} s")
    if rc == 0:
        return Outcome(m, "survived", dt, tail)
    if rc in (2, 3, 4, 5):  # interrupted, internal error, usage error, nothing collected: not a kill
        raise SystemExit(f"{m.name}: pytest exit {rc} ({tail}); fix the entry's tests")
    return Outcome(m, "killed", dt, tail)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", metavar="NAME", help="run these mutants only")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--jobs", "-j", type=int, default=2, help="parallel workers, each with its own copy")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per mutant's test run")
    ap.add_argument("--with-data", action="store_true", help="let tests see LUTFUSE_DATA / ../shared")
    ap.add_argument("--no-baseline", action="store_true", help="skip the unmutated run of every test named")
    args = ap.parse_args(argv)

    names = [m.name for m in MUTANTS]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        print(f"error: duplicate mutant names: {', '.join(sorted(dupes))}", file=sys.stderr)
        return 2
    chosen = MUTANTS
    if args.only:
        unknown = sorted(set(args.only) - set(names))
        if unknown:
            print(f"error: unknown mutant {unknown[0]!r} (see --list)", file=sys.stderr)
            return 2
        chosen = [m for m in MUTANTS if m.name in args.only]
    if args.list:
        for m in chosen:
            print(f"{m.name:36s} {m.file}: {m.why}")
        return 0

    stale = [(m, why) for m in chosen if (why := stale_reason(m))]
    runnable = [m for m in chosen if all(m is not s for s, _ in stale)]
    files = tree_files()
    workdir = Path(tempfile.mkdtemp(prefix="lutfuse-mutation."))
    copies: queue.Queue[Path] = queue.Queue()
    try:
        for i in range(max(1, args.jobs)):
            copy = workdir / f"tree{i}"
            copy_tree(copy, files)
            copies.put(copy)
        if not args.no_baseline:
            tests = tuple(sorted({t for m in runnable for t in m.tests}))
            copy = copies.get()
            rc, tail = run_tests(copy, tests, args.timeout * 4, args.with_data)
            copies.put(copy)
            if rc != 0:
                print(f"error: the unmutated tests fail (exit {rc}: {tail}); no score", file=sys.stderr)
                return 1
        outcomes: list[Outcome] = [Outcome(m, "stale", 0.0, why) for m, why in stale]
        lock = threading.Lock()
        todo: queue.Queue[Mutant] = queue.Queue()
        for m in runnable:
            todo.put(m)

        def worker() -> None:
            copy = copies.get()
            while True:
                try:
                    m = todo.get_nowait()
                except queue.Empty:
                    return
                out = run_mutant(copy, m, args.timeout, args.with_data)
                with lock:
                    outcomes.append(out)
                    print(f"{out.status:9s} {out.seconds:6.1f}s  {m.name}  ({m.file})", flush=True)

        threads = [threading.Thread(target=worker) for _ in range(max(1, args.jobs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    order = {m.name: i for i, m in enumerate(MUTANTS)}
    outcomes.sort(key=lambda o: order[o.mutant.name])
    survived = [o for o in outcomes if o.status == "survived"]
    stale_out = [o for o in outcomes if o.status == "stale"]
    scored = [o for o in outcomes if o.status != "stale"]
    killed = sum(o.killed for o in scored)
    for o in survived + stale_out:
        print(f"{o.status.upper()}: {o.mutant.name} ({o.mutant.file}): {o.mutant.why} [{o.detail}]")
    score = 100.0 * killed / len(scored) if scored else 0.0
    print(f"score: {killed}/{len(scored)} mutants killed ({score:.1f} %), {len(survived)} survived, "
          f"{len(stale_out)} stale")
    return 1 if stale_out or survived else 0


if __name__ == "__main__":
    sys.exit(main())
