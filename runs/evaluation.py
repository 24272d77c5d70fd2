"""Evaluation with hidden tests, as the official SWE-bench harness does it, in our own environments.

Per instance: resolve the image (env layer shared per repo/version, thin instance layer), apply the
model patch with the fallback chain, restore and apply the test patch, run the recipe's test command on
the files the test patch touches, and grade the log with the official parsers and rules. Anything that
stops an instance (patch does not apply, environment build fails, timeout) is recorded with its reason
and counted apart from "unresolved"; it never stops the batch.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from patchfleet.data.grading import grade, summarize, wrap_test_output
from patchfleet.data.recipes import Recipe, recipe_for, touched_test_files
from patchfleet.data.sources import RepoSource
from patchfleet.data.task import EvalSpec, Prediction, Task
from patchfleet.errors import PatchfleetError
from patchfleet.sandbox.base import Network, SandboxSpec
from patchfleet.sandbox.docker import DockerBackend
from patchfleet.sandbox.images import BaseLayer, EnvLayer, ImageBuilder, ImageSpec, InstanceLayer

TEST_TIMEOUT = 1800.0
RecipeLookup = Callable[[Task], Recipe]


@dataclass
class Outcome:
    """One instance's result: an official report, or the reason it could not be evaluated."""

    instance_id: str
    report: dict[str, Any] | None = None
    error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def resolved(self) -> bool:
        return bool(self.report and self.report[self.instance_id].get("resolved"))


def image_spec(task: Task, recipe: Recipe) -> ImageSpec:
    return ImageSpec(
        base=BaseLayer(distro=recipe.distro),
        env=EnvLayer(key=recipe.key, steps=recipe.env_steps, env=recipe.env_vars),
        instance=InstanceLayer(
            key=task.id, repo=task.repo, commit=task.base_commit, steps=recipe.instance_steps
        ),
    )


class Evaluator:
    """Evaluates predictions; thread-safe, so one evaluator serves every worker."""

    def __init__(
        self,
        backend: DockerBackend,
        source: RepoSource,
        out_dir: Path,
        *,
        recipes: RecipeLookup | None = None,
        allow_pull: bool = True,
        test_timeout: float = TEST_TIMEOUT,
        network: Network = Network.BRIDGE,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.backend = backend
        self.out_dir = out_dir
        self.recipes = recipes or (lambda task: recipe_for(task, source))
        self.builder = ImageBuilder(backend, repo_source=source, allow_pull=allow_pull, log=log)
        self.test_timeout = test_timeout
        # the official harness runs tests with the network on, and some suites need it (requests: httpbin)
        self.network = network
        self.log = log or (lambda line: None)

    def evaluate(self, task: Task, spec: EvalSpec, prediction: Prediction) -> Outcome:
        outcome = Outcome(task.id)
        folder = self.out_dir / prediction.model_name_or_path.replace("/", "__") / task.id
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "patch.diff").write_text(prediction.model_patch, encoding="utf-8", errors="surrogateescape")
        try:
            outcome.report = self._run(task, spec, prediction, folder, outcome.timings)
        except PatchfleetError as exc:
            outcome.error = f"{type(exc).__name__}: {exc}"
            log = getattr(exc, "log", "")
            (folder / "error.txt").write_text(outcome.error + ("\n\n" + log if log else "") + "\n")
        else:
            _write_json(folder / "report.json", outcome.report)
        return outcome

    def _run(
        self, task: Task, spec: EvalSpec, prediction: Prediction, folder: Path, timings: dict[str, float]
    ) -> dict[str, Any]:
        started = time.monotonic()
        recipe = self.recipes(task)
        image = self.builder.ensure(image_spec(task, recipe))
        timings["image"] = time.monotonic() - started
        sandbox_spec = SandboxSpec(
            image=image,
            labels={"role": "eval", "task": task.id},
            network=self.network,
            cpus=2.0,
            memory="8g",
            base_commit=None,
        )
        with self.backend.start(sandbox_spec) as sandbox:
            applied = sandbox.apply_patch(prediction.model_patch)
            (folder / "patch_apply.log").write_text(applied.log + "\n")
            applied.raise_for_failure()
            test_files = touched_test_files(task.repo, spec.test_patch)
            # the harness restores the test files to the base commit before applying the test patch;
            # one file at a time, because files the test patch creates do not exist there
            base = shlex.quote(sandbox.base_commit or "HEAD")
            files = " ".join(shlex.quote(f) for f in test_files)
            sandbox.exec(f'for f in {files}; do git checkout {base} -- "$f" 2>/dev/null; done; true')
            test_applied = sandbox.apply_patch(spec.test_patch)
            test_applied.raise_for_failure()
            command = "\n".join([*recipe.eval_prelude, recipe.test_command(test_files)])
            before_tests = time.monotonic()
            result = sandbox.exec(command, timeout=self.test_timeout, output_limit=32 * 2**20)
            timings["tests"] = time.monotonic() - before_tests
        log = wrap_test_output(result.output, result.exit_code)
        (folder / "test_output.txt").write_text(f"+ {command}\n{log}", encoding="utf-8")
        if result.timed_out:
            raise EvaluationTimeout(f"tests timed out after {self.test_timeout:.0f}s")
        report = grade(
            log,
            spec,
            repo=task.repo,
            version=task.version,
            model_patch=prediction.model_patch,
            model_name=prediction.model_name_or_path,
            parser=recipe.parser,
        )
        timings["total"] = time.monotonic() - started
        return report


class EvaluationTimeout(PatchfleetError):
    """The tests of an instance did not finish in time."""


def run_evaluation(
    evaluator: Evaluator,
    tasks: Iterable[Task],
    specs: dict[str, EvalSpec],
    predictions: dict[str, Prediction],
    *,
    workers: int = 1,
    run_id: str = "patchfleet",
) -> dict[str, Any]:
    """Evaluate every task that has a prediction; write per-instance reports and a run summary."""
    todo = [task for task in tasks if task.id in predictions]
    outcomes: list[Outcome] = []
    with ThreadPoolExecutor(max_workers=max(workers, 1)) as pool:
        futures = {pool.submit(evaluator.evaluate, t, specs[t.id], predictions[t.id]): t for t in todo}
        for future in as_completed(futures):
            outcome = future.result()
            outcomes.append(outcome)
            verdict = "error" if outcome.error else ("resolved" if outcome.resolved else "unresolved")
            evaluator.log(
                f"{outcome.instance_id}: {verdict}" + (f" ({outcome.error})" if outcome.error else "")
            )
    reports = {o.instance_id: o.report[o.instance_id] for o in outcomes if o.report}
    errors = {o.instance_id: o.error for o in outcomes if o.error}
    summary = summarize(reports, {t.id for t in todo}, errors)  # type: ignore[arg-type]
    summary["timings"] = {o.instance_id: o.timings for o in outcomes}
    _write_json(evaluator.out_dir / f"{run_id}.summary.json", summary)
    return summary


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)
