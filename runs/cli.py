"""The `patchfleet` command line: registers the commands, nothing else. Each command lives in its own
module (`runs/*_command(s).py`, `runs/github/command.py`), where its flags become `RunConfig` keys and its
errors go through `runs.options.fail`."""

from __future__ import annotations

import typer

from patchfleet.runs.options import SpreadCommand, VersionOption

app = typer.Typer(
    help="Resolve software issues with many sandboxed trajectories and a hybrid selector.",
    no_args_is_help=True,
)


@app.callback()
def _options(version: VersionOption = False) -> None:
    """Resolve software issues with many sandboxed trajectories and a hybrid selector."""


# The machine and the run index: doctor, sandbox, images, ledger; in runs/upkeep_commands.py.
from patchfleet.runs import upkeep_commands as _upkeep  # noqa: E402

app.command("doctor")(_upkeep.doctor)
app.add_typer(_upkeep.sandbox_app, name="sandbox")
app.add_typer(_upkeep.images_app, name="images")
app.add_typer(_upkeep.ledger_app, name="ledger")


# Evaluation and trajectories; their wiring lives in runs/eval_command.py and runs/trajectories_command.py.
from patchfleet.runs.eval_command import evaluate as _eval_command  # noqa: E402
from patchfleet.runs.trajectories_command import trajectories as _trajectories_command  # noqa: E402

app.command("eval", cls=SpreadCommand)(_eval_command)
app.command("trajectories", cls=SpreadCommand)(_trajectories_command)


# Batch runs; the wiring lives in runs/batch_command.py (flags) and runs/wiring.py (the run).
from patchfleet.runs.batch_command import BatchCommand as _BatchCommand  # noqa: E402
from patchfleet.runs.batch_command import batch as _batch_command  # noqa: E402

app.command("batch", cls=_BatchCommand)(_batch_command)


# Selection over any number of candidate sources; its wiring lives in runs/select_command.py.
from patchfleet.runs.select_command import SelectCommand as _SelectCommand  # noqa: E402
from patchfleet.runs.select_command import select as _select_command  # noqa: E402

app.command("select", cls=_SelectCommand)(_select_command)

# The GitHub Action bot; its logic lives in runs/github (the command module imports only typer at load).
from patchfleet.runs.github.command import bot as _bot_command  # noqa: E402

app.command("bot")(_bot_command)

# One issue, the demo, and browsing a run; logic in runs/fix.py, runs/demo.py, runs/inspect_run.py.
from patchfleet.runs import fix_commands as _fix_commands  # noqa: E402

app.command("fix")(_fix_commands.fix)
app.command("demo")(_fix_commands.demo)
app.command("inspect")(_fix_commands.inspect)


def main() -> None:
    app()
