"""Copy the installed tensorrt-stubs into build/typings/ with their syntax errors repaired.

tensorrt-stubs 10.13.0.35.1 (the newest on PyPI) ships ``.pyi`` files mypy cannot parse: parameters
named ``in`` (a keyword) and a parameter without a default after defaulted ones; mypy stops at the
first such file. They also declare the dtype ``tensorrt.bool``, which shadows the builtin in every
``-> bool`` of the same file. This writes a repaired copy that ``mypy_path`` (pyproject.toml) points
at; only the offending ``def`` lines and the shadowed annotations change.

    python tools/tensorrt_stubs.py && mypy lutfuse_deploy/engines lutfuse_deploy/runtime/tensorrt.py
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "build" / "typings"
PACKAGES = ("tensorrt", "tensorrt_bindings")


def _split_params(params: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for ch in params:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    return out + [cur]


def _parses(line: str) -> bool:
    try:
        ast.parse(line.strip() + " ...")
        return True
    except SyntaxError:
        return False


def fix_def(line: str) -> str:
    """Rename keyword-named parameters; give a default to parameters after a defaulted one."""
    line = re.sub(r"([(,]\s*)(in|from|lambda)(\s*:)", r"\1\2_\3", line)
    if _parses(line):
        return line
    head, _, rest = line.partition("(")
    params, sep, tail = rest.rpartition(") ->")
    if not sep:
        return line
    fixed, seen_default = [], False
    for p in _split_params(params):
        bare = p.strip()
        if "=" in bare:
            seen_default = True
        elif seen_default and bare and not bare.startswith("*"):
            p = p + " = ..."
        fixed.append(p)
    return f"{head}({','.join(fixed)}{sep}{tail}"


# ``bool`` used as a type (not the ``bool: DataType`` declaration, not in quotes or backticks)
_BOOL = re.compile(r"(?<![\w.'\"`])bool\b(?!\s*:\s*DataType)")


def unshadow_bool(text: str) -> str:
    if not re.search(r"^bool\s*:\s*DataType", text, flags=re.MULTILINE):
        return text
    head, sep, body = text.partition("\n")
    if not head.startswith("from __future__"):
        head, sep, body = "", "", text
    return f"{head}{sep}import builtins as _builtins\n" + _BOOL.sub("_builtins.bool", body)


def main() -> int:
    for pkg in PACKAGES:
        spec = importlib.util.find_spec(pkg)
        if spec is None or not spec.submodule_search_locations:
            print(f"{pkg} stubs not installed: pip install tensorrt-stubs", file=sys.stderr)
            return 1
        src = Path(next(iter(spec.submodule_search_locations)))
        for pyi in sorted(src.glob("*.pyi")):
            lines = pyi.read_text(encoding="utf-8").splitlines(keepends=True)
            lines = [
                fix_def(ln) if ln.lstrip().startswith("def ") and not _parses(ln) else ln for ln in lines
            ]
            text = unshadow_bool("".join(lines))
            ast.parse(text, filename=str(pyi))  # fail loudly if a repair was not enough
            dest = OUT / pkg / pyi.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(text, encoding="utf-8")
    print(f"repaired tensorrt stubs in {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
