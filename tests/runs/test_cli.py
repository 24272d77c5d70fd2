"""The command line, through typer's runner: what a user sees."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from patchfleet.runs.cli import app

runner = CliRunner()


def test_help_lists_the_command_groups():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in ("doctor", "sandbox", "images"):
        assert name in result.output


def test_doctor_names_the_fix_when_the_engine_is_down(tmp_path):
    result = runner.invoke(
        app, ["doctor", "--docker-host", f"unix://{tmp_path}/none.sock"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 1
    assert "docker engine" in result.output and "fail" in result.output
    assert "dockerd" in result.output


@pytest.mark.docker
def test_doctor_passes_on_this_machine(base_image):
    result = runner.invoke(app, ["doctor"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "docker engine" in result.output and "CA bundle" in result.output


@pytest.mark.docker
def test_images_list_shows_the_base_layer_with_its_size(base_image):
    result = runner.invoke(app, ["images", "list"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "base" in result.output and " MB" in result.output
