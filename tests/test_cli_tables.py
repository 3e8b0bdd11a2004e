"""Tables printed into a pipe or a log come out whole: one line per row, no cell folded mid-word."""

from __future__ import annotations

import io

import pytest

from lutfuse_deploy.cli import main
from lutfuse_deploy.cli.tables import print_table
from lutfuse_deploy.engines.targets import list_targets


def test_a_wide_table_is_not_folded_into_a_narrow_pipe() -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="wide")
    for name in ("precisions", "shapes WxH", "published"):
        table.add_column(name)
    table.add_row("fp32 fp16 int8 best", "128x128:640x480:1920x1080", "orin-nx 640x480 1.9 ms; 1280x720 4.1 ms")
    out = io.StringIO()
    print_table(table, Console(file=out, width=40))  # a StringIO is not a terminal
    rows = [ln for ln in out.getvalue().splitlines() if ln.startswith("│")]
    assert len(rows) == 1 and "128x128:640x480:1920x1080" in rows[0] and "1280x720 4.1 ms" in rows[0]
    assert "precisions" in out.getvalue()


def test_targets_in_an_80_column_pipe_has_one_line_per_target(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(SystemExit) as exc:
        main(["targets"])
    assert exc.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [ln for ln in lines if ln.startswith("│")]
    assert [r.split("│")[1].strip() for r in rows] == [t.name for t in list_targets()]
    assert any("TensorRT" in ln and "precisions" in ln for ln in lines)
