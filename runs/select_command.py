"""`patchfleet select`: the command's flags as `RunConfig` keys, input checks before anything is built,
then `runs.select.run_selection`. Kept out of cli.py so that the command module stays a thin door."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import SecretStr
from rich.console import Console

from patchfleet.errors import ConfigError
from patchfleet.runs.options import (
    SPREAD_OPTIONS,
    ApiBase,
    ApiKeyEnv,
    ConfigFile,
    Dataset,
    DockerHost,
    InstanceIds,
    Layout,
    Local,
    Mirrors,
    Pull,
    Recipes,
    Sets,
    SpreadCommand,
    errors_as_messages,
    spread,
)

console = Console()
DEFAULTS = {"outputs.dir": "out/select"}  # below the config file: only where nothing else names a folder


class SelectCommand(SpreadCommand):
    """`--instance-ids`, `--candidates` and `--trajectories` take several values after one flag."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        names = SPREAD_OPTIONS | {"--candidates", "--trajectories"}
        return super(SpreadCommand, self).parse_args(ctx, spread(args, names))


def select(
    candidates: Annotated[
        list[Path] | None,
        typer.Option(
            help="predictions files (.jsonl/.json, rows with `submission` too) or `patchfleet trajectories` "
            "output folders / outcomes.json files; several after one flag (data.candidates)"
        ),
    ] = None,
    dataset: Dataset = None,
    instance_ids: InstanceIds = None,
    trajectories: Annotated[
        list[Path] | None,
        typer.Option(
            help="folders of <instance_id>.traj.json (ours or mini-swe-agent's) to harvest tests from"
        ),
    ] = None,
    policy: Annotated[str | None, typer.Option(help="codemonkeys, r2e, agentless or default")] = None,
    verifier_model: Annotated[
        str | None, typer.Option(help="litellm model of the LLM judge (off if unset)")
    ] = None,
    test_writer_model: Annotated[
        str | None, typer.Option(help="litellm model of the test-writing trajectories")
    ] = None,
    generated_tests: Annotated[
        int | None, typer.Option(min=0, help="test-writing trajectories per instance (need a model)")
    ] = None,
    api_base: ApiBase = None,
    api_key_env: ApiKeyEnv = None,
    regression: Annotated[
        bool | None, typer.Option("--regression/--no-regression", help="discover regression tests at base")
    ] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="candidates run at once per instance")] = None,
    config: ConfigFile = None,
    set_: Sets = None,
    mirrors: Mirrors = None,
    layout: Layout = None,
    local: Local = None,
    recipes: Recipes = None,
    out: Annotated[
        Path | None,
        typer.Option(help="preds.jsonl, decisions.jsonl and per-instance inputs (default out/select)"),
    ] = None,
    pull: Pull = None,
    docker_host: DockerHost = None,
) -> None:
    """Pick one patch per instance among candidates from any number of systems and trajectories."""
    from patchfleet.runs.config import RunConfig

    with errors_as_messages():
        flags = select_shorthands(
            candidates=candidates,
            dataset=dataset,
            instance_ids=instance_ids,
            policy=policy,
            verifier_model=verifier_model,
            test_writer_model=test_writer_model,
            generated_tests=generated_tests,
            api_base=api_base,
            regression=regression,
            workers=workers,
            mirrors=mirrors,
            layout=layout,
            local=local,
            recipes=recipes,
            out=out,
            pull=pull,
            docker_host=docker_host,
        )
        run_config = RunConfig.load(config, set_ or [], flags, defaults=DEFAULTS)
        summary = run(run_config, trajectories or [], api_key_env)
    console.print(
        f"{summary['chosen']} / {summary['instances']} instance(s) got a patch "
        f"({summary['errors']} error(s)); {run_config.outputs.dir}/preds.jsonl, decisions.jsonl",
        highlight=False,
    )


def select_shorthands(**flags: Any) -> dict[str, Any]:
    """`patchfleet select` flags as the `RunConfig` keys they stand for (None: not given)."""
    keys = {
        "data.candidates": [str(p) for p in flags["candidates"]] if flags["candidates"] else None,
        "data.dataset": flags["dataset"],
        "data.instance_ids": flags["instance_ids"] or None,
        "data.mirrors": flags["mirrors"],
        "data.layout": flags["layout"],
        "data.local": flags["local"],
        "data.recipes": flags["recipes"],
        "selection.policy": flags["policy"],
        "selection.regression": flags["regression"],
        "selection.workers": flags["workers"],
        "selection.generated_tests": flags["generated_tests"],
        "outputs.dir": flags["out"],
        "sandbox.allow_pull": flags["pull"],
        "sandbox.docker_host": flags["docker_host"],
    }
    base = {"api_base": flags["api_base"]} if flags["api_base"] else {}
    if flags["verifier_model"]:
        keys["selection.verifier"] = {"model": {"type": "litellm", "model": flags["verifier_model"], **base}}
    if flags["test_writer_model"]:
        keys["selection.test_writer"] = {"type": "litellm", "model": flags["test_writer_model"], **base}
    return keys


def _with_key(model: Any, secret: SecretStr | None) -> Any:
    if secret is None or model is None or getattr(model, "type", None) != "litellm":
        return model
    return model.model_copy(update={"api_key": secret})


def run(config, trajectory_folders: list[Path], api_key_env: str | None) -> dict:
    """Check every input, then select for every task (among `data.candidates`); returns counts for the
    summary line."""
    from patchfleet.agent.pricing import Pricer
    from patchfleet.runs import validate
    from patchfleet.runs.select import Selector, run_selection, test_writer_agent
    from patchfleet.runs.wiring import load_run_tasks, repo_source
    from patchfleet.sandbox.images import ImageBuilder
    from patchfleet.sandbox.trust import HostTrust
    from patchfleet.selection.candidates import load_candidates
    from patchfleet.selection.verifier import Verifier

    config.selection.check()
    candidate_paths = list(config.data.candidates)
    if not candidate_paths:
        raise ConfigError("no candidates: pass --candidates (or set data.candidates in --config)")
    secret = None
    if api_key_env:
        value = os.environ.get(api_key_env)
        if not value:
            raise ConfigError(f"--api-key-env: the environment variable {api_key_env} is not set")
        secret = SecretStr(value)
    selection = config.selection
    if selection.verifier is not None:
        verifier_model = _with_key(selection.verifier.model, secret)
        selection = selection.model_copy(
            update={"verifier": selection.verifier.model_copy(update={"model": verifier_model})}
        )
    selection = selection.model_copy(update={"test_writer": _with_key(selection.test_writer, secret)})
    if selection.generated_tests and selection.test_writer is None and config.agent.model is None:
        raise ConfigError("--generated-tests needs a model: pass --test-writer-model")
    for model in (selection.verifier.model if selection.verifier else None, selection.test_writer):
        if model is not None and getattr(model, "type", None) == "litellm":
            Pricer(model.model, model.pricing).check()
    for folder in trajectory_folders:
        if not folder.is_dir():
            raise ConfigError(f"--trajectories {folder}: no such folder")
    for path in candidate_paths:
        if not path.exists():
            raise ConfigError(f"--candidates {path}: no such file or folder")

    tasks, _ = load_run_tasks(config, lambda line: console.print(line, highlight=False))
    outcomes = [p for p in candidate_paths if p.is_dir() or p.name == "outcomes.json"]
    predictions = [p for p in candidate_paths if p not in outcomes]
    loaded = load_candidates(predictions=predictions, outcomes=outcomes)
    for error in loaded.errors:
        console.print(f"[yellow]skipped:[/yellow] {error}", highlight=False)
    if not loaded.candidates:
        raise ConfigError(
            f"--candidates: no candidate patch could be read from {len(candidate_paths)} input(s)"
        )
    source = repo_source(config)
    validate.source(source, {task.repo for task in tasks})

    from patchfleet.data.recipes import load_specs, recipe_for

    specs = load_specs(config.data.recipes)
    backend = config.sandbox.backend(HostTrust.from_env())
    out = config.outputs.dir
    verifier = None
    if selection.verifier is not None:
        cache_dir = selection.verifier.cache_dir or out / "verifier-cache"
        verifier = Verifier(selection.verifier.model_copy(update={"cache_dir": cache_dir}))
    log = lambda line: console.print(line, markup=False, highlight=False)  # noqa: E731
    selector = Selector(
        backend=config.sandbox.limited(backend),  # the run config's limits in every selection sandbox
        builder=ImageBuilder(backend, repo_source=source, allow_pull=config.sandbox.allow_pull, log=log),
        recipe=lambda task: recipe_for(task, source, specs),
        source=source,
        config=selection,
        out_dir=out,
        log=log,
        verifier=verifier,
    )
    selector.test_writer = test_writer_agent(selection, config.agent.model)

    def progress(task, decision) -> None:
        chosen = decision.get("chosen")
        what = f"chose {chosen[:8]}" if chosen else f"no choice ({decision.get('error') or 'no candidate'})"
        console.print(f"{task.id}: {decision['candidates']} candidate(s), {what}", highlight=False)

    decisions = run_selection(
        selector, tasks, loaded.candidates, trajectory_folders=trajectory_folders, progress=progress
    )
    return {
        "instances": len(decisions),
        "chosen": sum(1 for d in decisions if d.get("chosen")),
        "errors": sum(1 for d in decisions if d.get("error")),
    }
