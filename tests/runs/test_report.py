"""report.html from a run folder's files: the scaling figure's numbers, a self-contained page, plots that
headless Chromium really draws, and `patchfleet inspect` over the same files."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from patchfleet.runs.cli import app
from patchfleet.runs.fix_select import suite_vote_policy, write_selection_files
from patchfleet.runs.report import (
    load_run,
    oracle_at_k,
    render_report,
    scaling_curve,
    write_report,
)
from patchfleet.selection.model import (
    BASE,
    Candidate,
    CandidateSource,
    Cell,
    Contract,
    Matrix,
    SelectionInputs,
    TestCase,
    TestKind,
)

RIGHT = "--- a/m.py\n+++ b/m.py\n@@ -1 +1 @@\n-x = 1\n+x = 2\n"
WRONG = "--- a/m.py\n+++ b/m.py\n@@ -1 +1,2 @@\n-x = 1\n+x = 3\n+y = 0\n"


def make_run(folder: Path) -> Path:
    """One task, four trajectories: #0 and #1 give the right patch, #2 a wrong one, #3 nothing."""
    task = folder / "demo-1"
    task.mkdir(parents=True)
    paths = [str(task / f"{i}.traj.json") for i in range(4)]
    patches = [RIGHT, RIGHT, WRONG, ""]
    rows = []
    for i, (path, patch) in enumerate(zip(paths, patches, strict=True)):
        messages = [
            {"role": "system", "content": "system"},
            {"role": "user", "content": "issue"},
            {"role": "assistant", "content": f"THOUGHT: step of #{i}\n\n```bash\nls\n```"},
            {"role": "user", "content": "<returncode>0</returncode>\n<output>\nm.py\n</output>"},
        ]
        Path(path).write_text(json.dumps({"messages": messages, "info": {"exit_status": "Submitted"}}))
        rows.append(
            {
                "index": i,
                "exit_status": "Submitted" if patch else "LimitsExceeded",
                "steps": 3,
                "cost": 0.01,
                "model": "m",
                "temperature": i / 10,
                "variant": None,
                "error": None,
                "trajectory": path,
                "patch": patch,
            }
        )
    (task / "outcomes.json").write_text(json.dumps({"instance_id": "demo-1", "trajectories": rows}))

    def source(i: int) -> CandidateSource:
        return CandidateSource(kind="trajectory", name="m", ref=paths[i], trajectory=paths[i])

    right = Candidate(id="right", instance_id="demo-1", patch=RIGHT, sources=(source(0), source(1)))
    wrong = Candidate(id="wrong", instance_id="demo-1", patch=WRONG, sources=(source(2),))
    test = TestCase.make(
        instance_id="demo-1", kind=TestKind.REGRESSION, contract=Contract.PASS_FAIL, command="true"
    )
    cells = [
        Cell(instance_id="demo-1", candidate_id=cid, test_id=test.id, exit_code=0)
        for cid in (BASE, "right", "wrong")
    ]
    inputs = SelectionInputs(
        instance_id="demo-1",
        candidates=[right, wrong],
        tests=[test],
        matrix=Matrix(instance_id="demo-1", cells=cells),
    )
    write_selection_files(task, inputs, suite_vote_policy(inputs))
    (task / "evaluation.json").write_text(json.dumps({"right": True, "wrong": False}))
    stages = {"environment": {"seconds": 12.0, "cost": 0}, "trajectories": {"seconds": 30.0, "cost": 0.04}}
    (folder / "run.json").write_text(
        json.dumps({"kind": "fix", "model": "m", "samples": 4, "stages": stages})
    )
    return folder


def test_oracle_at_k_is_exact() -> None:
    assert oracle_at_k(4, 2, 1) == pytest.approx(0.5)
    assert oracle_at_k(4, 2, 2) == pytest.approx(1 - 1 / 6)
    assert oracle_at_k(4, 2, 3) == 1.0
    assert oracle_at_k(4, 0, 4) == 0.0


def test_scaling_curve_from_the_files(tmp_path: Path) -> None:
    run = load_run(make_run(tmp_path))
    curves = scaling_curve(run, suite_vote_policy)
    assert curves is not None
    assert [k for k, _ in curves["oracle"]] == [1, 2, 3, 4]
    assert curves["oracle"][0][1] == pytest.approx(0.5) and curves["oracle"][-1][1] == 1.0
    assert {v for _, v in curves["random"]} == {0.5}
    # with all four samples the policy sees what the run saw: two votes for the right patch
    assert curves["selector"][-1][1] == 1.0
    # with one sample it can only pick that sample's patch: right half the time
    assert curves["selector"][0][1] == pytest.approx(0.5, abs=0.2)


def test_report_is_self_contained(tmp_path: Path) -> None:
    html = render_report(make_run(tmp_path))
    assert html.count('<svg class="plot"') == 3
    for series in ("oracle", "selector", "random"):
        assert f'data-series="{series}"' in html
    assert "<script" not in html and "<link" not in html and "src=" not in html
    assert 'href="demo-1/0.traj.json"' in html  # links to trajectories, relative to the run folder
    assert "resolved 1 / 1" in html and "chose <code>right</code>" in html


def _png_pixels(path: Path) -> tuple[int, int, list[bytes]]:
    """Decode an 8-bit RGB(A) PNG (Chromium's screenshots) into rows, without an imaging library."""
    data = path.read_bytes()
    chunks, pos = {}, 8
    idat = b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IDAT":
            idat += body
        else:
            chunks[kind] = body
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert depth == 8 and colour in (2, 6)
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows, previous = [], bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = previous[x]
            c = previous[x - bpp] if x >= bpp else 0
            if kind == 1:
                line[x] = (line[x] + a) & 255
            elif kind == 2:
                line[x] = (line[x] + b) & 255
            elif kind == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line) if bpp == 3 else bytes(v for i, v in enumerate(line) if i % 4 != 3))
        previous = line
    return width, height, rows


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium); .ci/run installs it")
    return found


def test_plots_are_drawn_in_headless_chromium(tmp_path: Path) -> None:
    chromium = _chromium()
    report = write_report(make_run(tmp_path / "run"))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars"]
    flags.append(f"--user-data-dir={tmp_path / 'profile'}")
    dom = subprocess.run(
        [chromium, *flags, "--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=120
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count("<svg") == 3 and dom.stdout.count("<polyline") == 3
    assert dom.stdout.count('<rect class="bar"') == 4

    shot = tmp_path / "report.png"
    done = subprocess.run(
        [chromium, *flags, f"--screenshot={shot}", "--window-size=900,700", report.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    _, _, rows = _png_pixels(shot)
    pixels = b"".join(rows)
    # every series colour and the bars' colour are really painted, not only present in the markup
    for colour in ("2b8a3e", "1c64d1", "c2410c", "6366f1"):
        assert pixels.count(bytes.fromhex(colour)) > 30, colour


def test_inspect_shows_the_run_the_task_and_a_trajectory(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    runner = CliRunner()
    overview = runner.invoke(app, ["inspect", str(run)], env={"COLUMNS": "200"})
    assert overview.exit_code == 0, overview.output
    assert "right *" in overview.output and "suite-vote" in overview.output
    assert "fails" not in overview.output and "+x = 2" in overview.output
    steps = runner.invoke(app, ["inspect", str(run), "demo-1", "--trajectory", "2"], env={"COLUMNS": "200"})
    assert steps.exit_code == 0, steps.output
    assert "step of #2" in steps.output and "m.py" in steps.output
    missing = runner.invoke(app, ["inspect", str(run), "nope"], env={"COLUMNS": "200"})
    assert missing.exit_code == 2 and "no task 'nope'" in missing.output


def test_batch_layout_selection_folder_and_summary(tmp_path: Path) -> None:
    """A batch keeps selection files in <run>/selection/<id>/, stage times in summary.json, stage costs in
    each task.json, and grades only the chosen patch (summary evaluation.resolved_ids)."""
    run = make_run(tmp_path / "run")
    task = run / "demo-1"
    selection = run / "selection" / "demo-1"
    selection.mkdir(parents=True)
    for name in ("candidates.json", "tests.json", "matrix.jsonl"):
        (task / name).rename(selection / name)
    decision = json.loads((task / "decision.json").read_text())
    (selection / "decision.json").write_text(json.dumps({"decision": decision, "others": {"r2e": decision}}))
    (task / "decision.json").unlink()
    (task / "evaluation.json").unlink()
    (run / "run.json").unlink()
    (task / "task.json").write_text(json.dumps({"status": "done", "costs": {"selection": 0.02}}))
    summary = {
        "stage_time": {"demo-1": {"image": 5.0, "trajectories": 20.0, "selection": 8.0}},
        "evaluation": {"resolved_instances": 1, "resolved_ids": ["demo-1"]},
    }
    (run / "summary.json").write_text(json.dumps(summary))
    view = load_run(run)
    assert [t.id for t in view.tasks] == ["demo-1"] and view.tasks[0].decision.chosen == "right"
    assert view.stages["trajectories"] == {"seconds": 20.0, "cost": pytest.approx(0.04)}
    assert view.stages["selection"] == {"seconds": 8.0, "cost": 0.02}
    html = render_report(run)
    assert "resolved 1 / 1" in html and "No resolve-rate figure" in html
    assert "<code>r2e</code> → <code>right</code>" in html and html.count('<svg class="plot"') == 2
