"""Checks of a command's inputs that run before any image is built or container started.

A bad input found after a 60-second environment build (or never: an unreadable predictions file used
to evaluate nothing and exit 0) wastes the user's time; each check here raises a one-line
`ConfigError` that names the option and the value, which the CLI prints with exit code 2.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from patchfleet.data.loaders import Loaded, load_predictions, load_tasks
from patchfleet.data.sources import LocalCheckout, MirrorFolder, RepoSource
from patchfleet.data.task import Prediction
from patchfleet.errors import ConfigError, DataError, RepoSourceError
from patchfleet.sandbox.base import Network
from patchfleet.sandbox.official import ImageMode, OfficialImages, image_mode

MAX_LISTED = 10  # ids named in one message; the rest are counted


def listed(ids: Iterable[str]) -> str:
    """`a, b, c` or `a, b, ... (and 40 more)`: an error message stays one readable line."""
    ids = sorted(ids)
    more = f" (and {len(ids) - MAX_LISTED} more)" if len(ids) > MAX_LISTED else ""
    return ", ".join(ids[:MAX_LISTED]) + more


def network(value: str) -> Network:
    try:
        return Network(value)
    except ValueError:
        choices = ", ".join(member.value for member in Network)
        raise ConfigError(f"--network {value!r}: expected one of {choices}") from None


def tasks(dataset: str, instance_ids: Iterable[str] | None) -> Loaded:
    """The dataset's tasks (only `instance_ids` when given); every id asked for must be there, as in the
    harness (its `load_swebench_dataset` refuses unknown ids)."""
    loaded = load_tasks(dataset, instance_ids=list(instance_ids) if instance_ids else None)
    if loaded.missing_ids:
        raise ConfigError(
            f"--instance-ids: unknown or invalid instance id(s) in {dataset}: {listed(loaded.missing_ids)}"
        )
    if not loaded.tasks:
        raise DataError(f"--dataset {dataset}: no task row could be read ({len(loaded.errors)} bad row(s))")
    return loaded


def predictions(
    source: str, loaded: Loaded, dataset: str, warn: Callable[[DataError], None]
) -> dict[str, Prediction]:
    """The predictions to evaluate. Bad rows are passed to `warn` and skipped; a file of which nothing
    can be read is an error, and so is a prediction whose id is not in the dataset (as in the harness,
    which checks against the whole dataset, not only the ids asked for)."""
    found, errors = load_predictions(source, gold_from=loaded)
    for error in errors:
        warn(error)
    if not found:
        detail = f"none of its {len(errors)} row(s) could be read; first: {errors[0]}" if errors else "empty"
        raise DataError(f"--predictions {source}: {detail}")
    unknown = set(found) - loaded.dataset_ids
    if unknown:
        raise DataError(
            f"--predictions {source}: prediction id(s) not in the dataset {dataset}: {listed(unknown)}"
        )
    return found


def source(repo_source: RepoSource, repos: Iterable[str]) -> None:
    """Every repository the tasks need is in the mirror folder (or the local checkout is a repository)."""
    if isinstance(repo_source, MirrorFolder):
        root = repo_source.root
        if not root.is_dir():
            raise ConfigError(f"--mirrors {root}: no such directory")
        missing = []
        for repo in sorted(set(repos)):
            try:
                repo_source.location(repo)
            except RepoSourceError:
                missing.append(repo)
        if missing:
            owner, _, name = missing[0].partition("/")
            example = root / repo_source.layout.format(owner=owner, name=name, repo=missing[0])
            raise ConfigError(
                f"--mirrors {root}: no mirror of {listed(missing)} (layout {repo_source.layout!r}: "
                f"looked for {example})"
            )
    elif isinstance(repo_source, LocalCheckout):
        try:
            repo_source.location("")
        except RepoSourceError as exc:
            raise ConfigError(f"--local {repo_source.path}: not a git repository") from exc


def images(value: str) -> ImageMode:
    return image_mode(value)


def official_images(official: OfficialImages, instance_ids: Iterable[str]) -> None:
    """With `--images official`, every instance has its official image here or pullable (asks the
    engine and the registry; builds nothing)."""
    missing = official.missing(sorted(set(instance_ids)))
    if missing:
        raise ConfigError(
            f"--images official: no official image for {listed(missing)} (not here, cannot be pulled); "
            "use --images auto to build ours for them"
        )
