"""Evaluation with hidden tests, as the official SWE-bench harness does it, in our own environments.

Per instance: resolve the image (env layer shared per repo/version, thin instance layer), apply the
model patch with the harness's own command chain (`apply_like_harness`), run the official-shape eval
script (`data.evalscript`: re-install, restore and apply the test patch, the recipe's test command on the
files it touches), and grade the log with the official parsers and rules. Anything that stops an
instance (patch does not apply, environment build fails, timeout) is recorded with its reason and
counted apart from "unresolved"; it never stops the batch. Verdicts are cached under `verdict_key`, so a
killed run resumes and equal patches run once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from swebench.harness.constants import (
    END_TEST_OUTPUT,
    LOG_REPORT,
    LOG_TEST_OUTPUT,
    RUN_EVALUATION_LOG_DIR,
)
from swebench.harness.run_evaluation import GIT_APPLY_CMDS

from patchfleet.atomic import write_json_atomic
from patchfleet.data.evalscript import eval_script, official_eval_script
from patchfleet.data.grading import grade, parser_name, summarize
from patchfleet.data.recipes import Recipe, recipe_for, spec_for
from patchfleet.data.sources import RepoSource
from patchfleet.data.task import EvalSpec, Prediction, Task
from patchfleet.data.upstream import Specs
from patchfleet.errors import PatchApplyError, PatchfleetError
from patchfleet.executor import Executor, LocalExecutor
from patchfleet.runs.verdicts import VerdictCache
from patchfleet.sandbox.base import REPO_DIR, Network, SandboxSpec
from patchfleet.sandbox.docker import DockerBackend
from patchfleet.sandbox.git import RESET_TREE, apply_like_harness, forget_baseline
from patchfleet.sandbox.images import ImageBuilder, ImageSpec, image_spec
from patchfleet.sandbox.official import ImageMode, OfficialImage, OfficialImages

TEST_TIMEOUT = 1800.0
EVAL_SCRIPT = "/eval.sh"
LOG_LIMIT = 32 * 2**20
KEY_FORMAT = 1  # bump when evaluation changes in a way the key does not see
# what a verdict of a patch that plain `git apply` refused depends on (recorded with each cached verdict)
HARNESS_CHAIN = [*GIT_APPLY_CMDS, RESET_TREE, "no baseline exclusions"]
# how a patch got applied, when the verdict does not depend on which chain was tried
STABLE_METHODS = {GIT_APPLY_CMDS[0], "empty"}
RecipeLookup = Callable[[Task], Recipe]
DEFAULT_RUN_ID = "patchfleet"


def instance_dir(out_dir: Path, run_id: str, model: str, instance_id: str) -> Path:
    """Where one instance's logs and report go, as the harness lays them out under its working directory:
    `<out>/logs/run_evaluation/<run_id>/<model>/<instance_id>/` (a `/` in the model name becomes `__`)."""
    return out_dir / RUN_EVALUATION_LOG_DIR / run_id / model.replace("/", "__") / instance_id


def run_report_path(out_dir: Path, run_id: str, model: str) -> Path:
    """The run report, named as the harness names it: `<out>/<model>.<run_id>.json`."""
    return out_dir / f"{model.replace('/', '__')}.{run_id}.json"


@dataclass
class Outcome:
    """One instance's result: an official report, or the reason it could not be evaluated."""

    instance_id: str
    report: dict[str, Any] | None = None
    error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    # which command of the harness's chain applied the patch: a verdict that needed `patch --fuzz` is one
    # an older harness (without that fallback) would have called unapplied
    apply_method: str | None = None

    @property
    def resolved(self) -> bool:
        return bool(self.report and self.report[self.instance_id].get("resolved"))


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
        cpus: float | None = 2.0,
        memory: str | None = "8g",
        reinstall: bool = True,
        log: Callable[[str], None] | None = None,
        run_id: str = DEFAULT_RUN_ID,
        images: ImageMode | str = ImageMode.LOCAL,
        specs: Specs | None = None,
    ) -> None:
        # how to make it again elsewhere: a copy sent to a Ray worker builds its own images and clients
        self._arguments = (
            (backend, source, out_dir),
            {
                "recipes": recipes,
                "allow_pull": allow_pull,
                "test_timeout": test_timeout,
                "network": network,
                "cpus": cpus,
                "memory": memory,
                "reinstall": reinstall,
                "log": log,
                "run_id": run_id,
                "images": images,
                "specs": specs,
            },
        )
        self.backend = backend
        self.out_dir = out_dir
        self.run_id = run_id  # names the log folder of `evaluate` calls that do not give their own
        self.recipes = recipes or (lambda task: recipe_for(task, source))
        self.builder = ImageBuilder(backend, repo_source=source, allow_pull=allow_pull, log=log)
        # an official image is evaluated with the harness's own script, made from the published spec
        self.official = OfficialImages(self.builder, images)
        self.specs = specs
        self.test_timeout = test_timeout
        # the official harness runs tests with the network on, and some suites need it (requests: httpbin)
        self.network = network
        self.cpus, self.memory = cpus, memory  # each test container's limits (None: none)
        # the harness re-runs the install before the tests (a patch may change packaging metadata)
        self.reinstall = reinstall
        self.log = log or (lambda line: None)
        # a recipe may read files from the repository source; every patch of a task shares it
        self._recipe_of: dict[str, Recipe] = {}
        self.verdicts = VerdictCache(out_dir, chain=HARNESS_CHAIN, stable_methods=STABLE_METHODS)

    def __reduce__(self) -> tuple[Any, ...]:
        args, kwargs = self._arguments
        return partial(Evaluator, **kwargs), args

    def evaluate(
        self, task: Task, spec: EvalSpec, prediction: Prediction, *, run_id: str | None = None
    ) -> Outcome:
        outcome = Outcome(task.id)
        folder = instance_dir(self.out_dir, run_id or self.run_id, prediction.model_name_or_path, task.id)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "patch.diff").write_text(prediction.model_patch, encoding="utf-8", errors="surrogateescape")
        try:
            plan, key = self._verdict_key(task, spec, prediction)
            cached = self.verdicts.lookup(task.id, key)
            if cached is not None:
                (outcome.report, outcome.apply_method), outcome.timings = cached, {"cached": 1.0}
            else:
                outcome.report, outcome.apply_method = self._run(
                    task, spec, prediction, plan, folder, outcome.timings
                )
                self.verdicts.put(task.id, key, outcome.report, outcome.apply_method, folder)
        except PatchfleetError as exc:
            outcome.error = f"{type(exc).__name__}: {exc}"
            log = getattr(exc, "log", "")
            (folder / "error.txt").write_text(outcome.error + ("\n\n" + log if log else "") + "\n")
            (folder / LOG_REPORT).unlink(missing_ok=True)  # the harness: no report.json, not completed
        else:
            (folder / "error.txt").unlink(missing_ok=True)
            write_json_atomic(folder / LOG_REPORT, outcome.report)
        return outcome

    def cached(self, task: Task, spec: EvalSpec, prediction: Prediction) -> Outcome | None:
        """The stored verdict of this patch, if there is one; builds nothing, runs nothing."""
        _, key = self._verdict_key(task, spec, prediction)
        cached = self.verdicts.lookup(task.id, key)
        if cached is None:
            return None
        report, method = cached
        return Outcome(task.id, report, timings={"cached": 1.0}, apply_method=method)

    def _verdict_key(self, task: Task, spec: EvalSpec, prediction: Prediction) -> tuple[_Plan, str]:
        official = self.official.for_task(task.id)
        if official is not None:
            upstream = spec_for(task.repo, task.version, self.specs)
            key = official_verdict_key(official.image_id, upstream, spec, prediction.model_patch)
            return _Plan(official=official, upstream=upstream), key
        recipe = self._recipe(task)
        image = image_spec(task, recipe)  # its tags are content hashes: known without building it
        key = verdict_key(
            recipe, spec, prediction.model_patch, image=image.tags()[-1], reinstall=self.reinstall
        )
        return _Plan(recipe=recipe, image=image), key

    def _recipe(self, task: Task) -> Recipe:
        if task.id not in self._recipe_of:
            self._recipe_of[task.id] = self.recipes(task)
        return self._recipe_of[task.id]

    def _run(
        self,
        task: Task,
        spec: EvalSpec,
        prediction: Prediction,
        plan: _Plan,
        folder: Path,
        timings: dict[str, float],
    ) -> tuple[dict[str, Any], str]:
        started = time.monotonic()
        if plan.official is not None:
            tag = plan.official.name  # as the harness: the image's own environment; its script activates
        else:
            assert plan.image is not None
            tag = self.builder.ensure(plan.image)
        timings["image"] = time.monotonic() - started
        sandbox_spec = SandboxSpec(
            image=tag,
            labels={"role": "eval", "task": task.id},
            network=self.network,
            cpus=self.cpus,
            memory=self.memory,
            base_commit=None,
        )
        with self.backend.start(sandbox_spec) as sandbox:
            forget_baseline(sandbox, REPO_DIR)
            method, apply_log = apply_like_harness(sandbox, prediction.model_patch)
            (folder / "patch_apply.log").write_text(apply_log + "\n", encoding="utf-8")
            if method is None:
                raise PatchApplyError(f"patch does not apply with any command of the harness:\n{apply_log}")
            if plan.official is not None:  # the harness's own script, in the conda env `testbed`
                assert plan.upstream is not None
                script = official_eval_script(
                    task.repo, plan.upstream, test_patch=spec.test_patch, base_commit=task.base_commit
                )
            else:
                assert plan.recipe is not None
                # the upstream base is the root of our instance repository (its set-up edits are a commit
                # on top, as in the official images); everything else is the official script
                root = sandbox.exec("git rev-list --max-parents=0 HEAD", timeout=60)
                script = eval_script(
                    plan.recipe,
                    test_patch=spec.test_patch,
                    base_commit=root.output.strip().splitlines()[-1] if root.ok else "HEAD",
                    reinstall=self.reinstall,
                )
            (folder / "eval.sh").write_text(script, encoding="utf-8", errors="surrogateescape")
            sandbox.write_file(EVAL_SCRIPT, script, mode=0o755)
            before_tests = time.monotonic()
            result = sandbox.exec(f"bash {EVAL_SCRIPT}", timeout=self.test_timeout, output_limit=LOG_LIMIT)
            timings["tests"] = time.monotonic() - before_tests
        log = result.output
        (folder / LOG_TEST_OUTPUT).write_text(log, encoding="utf-8")
        if result.timed_out:
            raise EvaluationTimeout(f"tests timed out after {self.test_timeout:.0f}s")
        if END_TEST_OUTPUT not in log:
            raise EvaluationError(f"the eval script ended before the tests did (exit {result.exit_code})")
        report = grade(
            log,
            spec,
            repo=task.repo,
            version=task.version,
            model_patch=prediction.model_patch,
            model_name=prediction.model_name_or_path,
            parser=plan.recipe.parser if plan.recipe is not None else parser_name(task.repo),
        )
        timings["total"] = time.monotonic() - started
        return report, method


def verdict_key(recipe: Recipe, spec: EvalSpec, model_patch: str, *, image: str, reinstall: bool) -> str:
    """What a verdict depends on: the environment (the recipe, and the image's content-hashed tag, which
    also sees each layer's build format), the hidden tests, the patch and how it is run. Equal keys give
    equal verdicts, so a resumed run or a second submission of the same patch reuses it."""
    content = json.dumps(
        [dataclasses.asdict(recipe), image, spec.model_dump(), model_patch, reinstall, KEY_FORMAT],
        sort_keys=True,
    )
    return hashlib.sha256(content.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def official_verdict_key(image_id: str, upstream: dict[str, Any], spec: EvalSpec, model_patch: str) -> str:
    """`verdict_key` of an evaluation in an official image: its content id, the published spec the
    harness's script is made from, the hidden tests and the patch."""
    content = json.dumps(
        ["official", image_id, upstream, spec.model_dump(), model_patch, KEY_FORMAT], sort_keys=True
    )
    return hashlib.sha256(content.encode("utf-8", "surrogateescape")).hexdigest()[:32]


@dataclass(frozen=True)
class _Plan:
    """How one instance is evaluated: in our layered image from its recipe, or in its official image with
    the harness's script made from the published spec (`upstream`)."""

    recipe: Recipe | None = None
    image: ImageSpec | None = None
    official: OfficialImage | None = None
    upstream: dict[str, Any] | None = None


class EvaluationError(PatchfleetError):
    """An instance could not be evaluated (counted apart from "unresolved")."""


class EvaluationTimeout(EvaluationError):
    """The tests of an instance did not finish in time."""


def _evaluate_one(evaluator: Evaluator, run_id: str, job: tuple[Task, EvalSpec, Prediction]) -> Outcome:
    """One instance, as a unit of work (here or on a Ray node); logged as soon as it is known."""
    task, spec, prediction = job
    try:
        outcome = evaluator.evaluate(task, spec, prediction, run_id=run_id)
    except Exception as exc:  # noqa: BLE001 - a bug in one instance must not sink the batch
        outcome = Outcome(task.id, error=f"internal: {type(exc).__name__}: {exc}")
    verdict = "error" if outcome.error else ("resolved" if outcome.resolved else "unresolved")
    cached = " (verdict from the cache)" if "cached" in outcome.timings else ""
    evaluator.log(
        f"{outcome.instance_id}: {verdict}{cached}" + (f" ({outcome.error})" if outcome.error else "")
    )
    return outcome


def run_evaluation(
    evaluator: Evaluator,
    tasks: Iterable[Task],
    specs: dict[str, EvalSpec],
    predictions: dict[str, Prediction],
    *,
    workers: int = 1,
    run_id: str | None = None,
    dataset_ids: Iterable[str] | None = None,
    executor: Executor | None = None,
) -> dict[str, Any]:
    """Evaluate every task that has a non-empty prediction and write the run report, as the harness does.

    Per-instance files go to `instance_dir`, the report to `run_report_path` (named after the first
    prediction's model, as `make_run_report` names it). `total_instances` counts `dataset_ids` (the
    dataset, or the ids asked for; default: `tasks`); an empty patch is not run but listed under
    `empty_patch_ids`. The report also holds `errors` (why each error instance failed) and `timings`.
    `executor`: where each instance is evaluated (default: `workers` threads here; Ray: a node each).
    """
    run_id = run_id or evaluator.run_id
    tasks = list(tasks)
    dataset = set(dataset_ids) if dataset_ids is not None else {t.id for t in tasks}
    empty = {i for i, p in predictions.items() if not p.model_patch}
    todo = [task for task in tasks if task.id in predictions and task.id not in empty]
    jobs = [(t, specs[t.id], predictions[t.id]) for t in todo]
    outcomes = (executor or LocalExecutor()).map(
        partial(_evaluate_one, evaluator, run_id), jobs, workers=max(workers, 1)
    )
    reports = {o.instance_id: o.report[o.instance_id] for o in outcomes if o.report}
    errors = {o.instance_id: o.error for o in outcomes if o.error}
    logs = {}
    for o in outcomes:  # what the harness classifies infrastructure failures from
        if not o.resolved:
            folder = instance_dir(
                evaluator.out_dir, run_id, predictions[o.instance_id].model_name_or_path, o.instance_id
            )
            logs[o.instance_id] = "\n".join(
                path.read_text(errors="replace")
                for path in (folder / LOG_TEST_OUTPUT, folder / "error.txt")
                if path.is_file()
            )
    summary = summarize(
        reports,
        set(predictions),
        errors,  # type: ignore[arg-type]
        dataset_ids=dataset,
        empty_patch_ids=empty & dataset,  # the harness looks only at the dataset's
        logs=logs,
    )
    summary["timings"] = {o.instance_id: o.timings for o in outcomes}
    if predictions:
        model = next(iter(predictions.values())).model_name_or_path
        write_json_atomic(run_report_path(evaluator.out_dir, run_id, model), summary)
    return summary
