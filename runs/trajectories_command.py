"""`patchfleet trajectories`: its flags as `RunConfig` keys, every input checked before the first image is
built, then `runs.trajectories.run_tasks`. Kept out of cli.py, as the other commands are.

Before `RunConfig`, this command's `--config` was an agent config and its `--set` keys were the agent
config's (`--set limits.step_limit=50`); both still are (`RunConfig.load(agent_at_top=True)`), and run
config keys (`--set agent.limits.step_limit=50`, `--set sandbox.cpus=2`) work too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from patchfleet.errors import ConfigError
from patchfleet.runs.options import (
    ApiBase,
    ApiKeyEnv,
    Dataset,
    DockerHost,
    Images,
    InstanceIds,
    Layout,
    Local,
    MaxLlmCalls,
    MaxSandboxes,
    Mirrors,
    Model,
    Pull,
    Recipes,
    Sets,
    Temperatures,
    errors_as_messages,
)

console = Console()
DEFAULTS = {"outputs.dir": "out/trajectories"}  # below the config file: only where nothing else names one


def trajectories(
    dataset: Dataset = None,
    instance_ids: InstanceIds = None,
    n: Annotated[int | None, typer.Option(min=1, help="trajectories per task (default 4)")] = None,
    config: Annotated[
        Path | None,
        typer.Option(help="run config YAML, or an agent config (its keys are read as the `agent` section)"),
    ] = None,
    set_: Sets = None,
    model: Model = None,
    api_base: ApiBase = None,
    api_key_env: ApiKeyEnv = None,
    temperatures: Temperatures = None,
    start_spread: Annotated[
        float | None,
        typer.Option(min=0.0, help="seconds over which the N starts are spread (about one latency)"),
    ] = None,
    max_llm_calls: MaxLlmCalls = None,
    max_sandboxes: MaxSandboxes = None,
    workers: Annotated[int | None, typer.Option(min=1, help="tasks at once")] = None,
    mirrors: Mirrors = None,
    layout: Layout = None,
    local: Local = None,
    recipes: Recipes = None,
    out: Annotated[
        Path | None, typer.Option(help="trajectory files and outcomes go here (default out/trajectories)")
    ] = None,
    pull: Pull = None,
    images: Images = None,
    docker_host: DockerHost = None,
) -> None:
    """Run N trajectories per task in parallel, each in its own sandbox; write them and their outcomes."""
    from patchfleet.runs.config import RunConfig

    with errors_as_messages():
        flags = trajectories_shorthands(
            dataset=dataset,
            instance_ids=instance_ids,
            n=n,
            model=model,
            api_base=api_base,
            temperatures=temperatures,
            start_spread=start_spread,
            max_llm_calls=max_llm_calls,
            max_sandboxes=max_sandboxes,
            workers=workers,
            mirrors=mirrors,
            layout=layout,
            local=local,
            recipes=recipes,
            out=out,
            pull=pull,
            images=images,
            docker_host=docker_host,
        )
        run_config = RunConfig.load(
            config, set_ or [], flags, defaults=DEFAULTS, agent_at_top=True, label="agent config"
        )
        documents = run(run_config, api_key_env, log=_log)
    _print_outcomes(documents, run_config.outputs.dir)


def trajectories_shorthands(**flags: Any) -> dict[str, Any]:
    """`patchfleet trajectories` flags as the `RunConfig` keys they stand for (None: not given)."""
    from patchfleet.runs import validate
    from patchfleet.runs.config import model_shorthands
    from patchfleet.runs.trajectories import parallel_config

    temperatures = flags["temperatures"]
    return {
        **model_shorthands(flags["model"], flags["api_base"]),
        "data.dataset": flags["dataset"],
        "data.instance_ids": flags["instance_ids"] or None,
        "data.mirrors": flags["mirrors"],
        "data.layout": flags["layout"],
        "data.local": flags["local"],
        "data.recipes": flags["recipes"],
        "parallel.n": flags["n"],
        "parallel.temperatures": parallel_config(1, temperatures).temperatures if temperatures else None,
        "parallel.start_spread_s": flags["start_spread"],
        "max_llm_calls": flags["max_llm_calls"],
        "max_sandboxes": flags["max_sandboxes"],
        "workers": flags["workers"],
        "images": validate.images(flags["images"]).value if flags["images"] else None,
        "outputs.dir": flags["out"],
        "sandbox.allow_pull": flags["pull"],
        "sandbox.docker_host": flags["docker_host"],
    }


def run(config, api_key_env: str | None, *, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Check every input, then run every task's trajectories; returns their outcomes documents."""
    from patchfleet.agent.config import LitellmModelConfig
    from patchfleet.data.recipes import load_specs, recipe_for
    from patchfleet.runs import trajectories as runner
    from patchfleet.runs import validate
    from patchfleet.runs.config import with_api_key
    from patchfleet.runs.wiring import load_run_tasks, repo_source
    from patchfleet.sandbox.images import ImageBuilder
    from patchfleet.sandbox.official import OfficialImages
    from patchfleet.sandbox.trust import HostTrust

    source = repo_source(config)
    models = [config.agent.model, *config.parallel.models]
    if api_key_env and not any(isinstance(model, LitellmModelConfig) for model in models):
        raise ConfigError("--api-key-env needs a litellm model (--model or model.type=litellm)")
    config = with_api_key(config, api_key_env)
    if not config.data.instance_ids:  # the whole of a dataset by accident would be a costly mistake
        raise ConfigError("no instance ids: pass --instance-ids (or set data.instance_ids in --config)")
    tasks, _ = load_run_tasks(config, log)
    runner.check_models(config.agent, config.parallel)
    validate.source(source, {task.repo for task in tasks})
    specs = load_specs(config.data.recipes)
    backend = config.sandbox.backend(HostTrust.from_env())
    builder = ImageBuilder(backend, repo_source=source, allow_pull=config.sandbox.allow_pull, log=log)
    official = OfficialImages(builder, config.images)
    validate.official_images(official, [task.id for task in tasks])
    return runner.run_tasks(
        tasks,
        config.agent,
        config.parallel,
        backend=backend,
        builder=builder,
        official=official,
        recipe=lambda task: recipe_for(task, source, specs),
        out_dir=config.outputs.dir,
        workers=config.workers,
        llm_limiter=threading.BoundedSemaphore(config.max_llm_calls) if config.max_llm_calls else None,
        sandbox_limiter=threading.BoundedSemaphore(config.max_sandboxes) if config.max_sandboxes else None,
        sandbox_config=config.sandbox,
    )


def _print_outcomes(documents: list[dict], out: Path) -> None:
    table = Table("task", "#", "status", "steps", "cost", "temp", "patch", "error")
    rows = [(doc["instance_id"], r) for doc in documents for r in doc["trajectories"]]
    for task_id, r in rows:
        lines = r["patch"].splitlines()
        added = sum(line.startswith("+") and not line.startswith("+++") for line in lines)
        removed = sum(line.startswith("-") and not line.startswith("---") for line in lines)
        colour = "green" if r["exit_status"] == "Submitted" else "yellow" if not r["error"] else "red"
        table.add_row(
            task_id,
            str(r["index"]),
            f"[{colour}]{r['exit_status']}[/]",
            str(r["steps"]),
            f"${r['cost']:.4f}",
            "" if r["temperature"] is None else f"{r['temperature']:g}",
            f"+{added} -{removed}" if lines else "",
            (r["error"] or {}).get("message", "")[:80],
        )
    console.print(table)
    submitted = sum(r["exit_status"] == "Submitted" for _, r in rows)
    console.print(
        f"{submitted} / {len(rows)} trajectories submitted over {len(documents)} task(s); "
        f"outcomes in {out}/<instance>/outcomes.json"
    )


def _log(line: str) -> None:
    console.print(line, markup=False, highlight=False)
