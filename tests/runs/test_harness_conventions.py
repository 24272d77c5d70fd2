"""The command line follows the official harness's conventions: `--instance-ids a b c` after one flag,
`patchfleet --version`, and the eval help that says where the report and logs go."""

from __future__ import annotations

import json
from importlib.metadata import version

import pytest
from typer.testing import CliRunner

from patchfleet.runs.cli import app
from patchfleet.runs.options import spread

runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--instance-ids", "a", "b", "c"],
            ["--instance-ids", "a", "--instance-ids", "b", "--instance-ids", "c"],
        ),
        (["--instance-ids", "a", "--out", "x", "y"], ["--instance-ids", "a", "--out", "x", "y"]),
        (["--instance-ids=a", "b"], ["--instance-ids=a", "--instance-ids", "b"]),
        (["--instance-ids", "a", "--no-pull", "b"], ["--instance-ids", "a", "--no-pull", "b"]),
        (["--instance-ids", "a", "--instance-ids", "b"], ["--instance-ids", "a", "--instance-ids", "b"]),
        (["--instance-ids", "a", "--", "b"], ["--instance-ids", "a", "--", "b"]),
        (["--set", "a=1", "b=2"], ["--set", "a=1", "b=2"]),  # other list options are not spread
    ],
)
def test_spread_turns_values_after_one_flag_into_repeated_flags(args, expected):
    assert spread(args) == expected


def test_eval_takes_several_instance_ids_after_one_flag(tmp_path):
    rows = [
        {
            "instance_id": f"o__r-{i}",
            "repo": "o/r",
            "base_commit": "0" * 40,
            "problem_statement": "p",
            "patch": "",
        }
        for i in (1, 2)
    ]
    dataset = tmp_path / "d.jsonl"
    dataset.write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = runner.invoke(
        app,
        [
            *("eval", "--predictions", "gold", "--dataset", str(dataset)),
            *("--instance-ids", "o__r-1", "o__r-2", "o__r-9", "o__r-8"),
            *("--docker-host", f"unix://{tmp_path}/none.sock"),
        ],
        env={"COLUMNS": "300"},
    )
    # the first id was the flag's, the known second and the unknown others were all read as ids
    assert result.exit_code == 2, result.output
    assert "unknown or invalid instance id(s)" in result.output and "o__r-8, o__r-9" in result.output
    assert "o__r-2" not in result.output


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"patchfleet {version('patchfleet')}"


def test_eval_help_shows_the_official_conventions():
    result = runner.invoke(app, ["eval", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "space-separated after one flag" in text
    assert "<model>.<run_id>.json" in text and "logs/run_evaluation/<run_id>/<model>/<id>/" in text
