"""When were the official SWE-bench environments resolved? Evidence from trajectories run in them.

Our environment layers resolve unpinned dependencies as of one moment (`recipes.PACKAGES_AS_OF`, pip's
`--uploaded-prior-to`); the official images resolved them whenever each image was built. The mini-swe-agent
trajectories in `../shared/data/trajectories/` ran in the official images and print, in pytest's and
Sphinx's headers, the versions of Python, pytest, its plugins and docutils. For every observed
(package, version) the release dates on PyPI bound the build: not before that version's upload, and, if
the spec does not pin the package, before the next release's. This script gathers those windows per
instance and says which observed versions our cut-off resolves differently.

    python benchmarks/official_env_versions.py \
        --out benchmarks/results/official_env_versions/official_env_versions.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from patchfleet.data.recipes import PACKAGES_AS_OF, PACKAGES_AS_OF_BY_VERSION, packages_as_of, spec_for

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
HEADER = re.compile(r"platform linux -- Python ([0-9.]+), pytest-([0-9.]+), pluggy-([0-9.]+)")
PLUGINS = re.compile(r"plugins: ((?:[A-Za-z0-9_.-]+-[0-9][0-9.]*[0-9](?:, )?)+)")
SPHINX = re.compile(r"libraries: Sphinx-[^,]+, docutils-([0-9.]+[0-9])")
SIMPLE = "https://pypi.org/simple/{name}/"
CANDIDATE_CUTOFFS = ("2024-10-10T00:00:00Z", "2024-10-24T00:00:00Z", "2024-11-15T00:00:00Z")


def observed(text: str) -> dict[str, set[str]]:
    """package -> versions printed in one trajectory (the Python interpreter under `python`)."""
    found: dict[str, set[str]] = defaultdict(set)
    for python, pytest, pluggy in HEADER.findall(text):
        found["python"].add(python)
        found["pytest"].add(pytest)
        found["pluggy"].add(pluggy)
    for plugins in PLUGINS.findall(text):
        for item in plugins.split(", "):
            name, _, version = item.rpartition("-")
            if name and version:
                found[name if name.startswith("pytest") or name == "hypothesis" else f"pytest-{name}"].add(
                    version
                )
    for docutils in SPHINX.findall(text):
        found["docutils"].add(docutils)
    return found


def agent_installed(name: str, text: str) -> bool:
    """Whether the agent ran `pip install ... <name>` itself (pluggy comes with an installed pytest). The
    text is a JSON file: one command ends at an escaped newline or a quote."""
    names = (name, "pytest") if name == "pluggy" else (name,)
    return any(re.search(rf"pip3? install [^\"\\]*\b{re.escape(n)}\b", text) for n in names)


def release_dates(name: str) -> dict[str, str]:
    """version -> first upload time on PyPI (PEP 691 JSON of the simple index, PEP 700 upload-time)."""
    request = urllib.request.Request(
        SIMPLE.format(name=name), headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        document = json.load(response)
    stem = re.sub(r"[-_.]+", "[-_.]", name)
    dates: dict[str, str] = {}
    for item in document.get("files", []):
        match = re.match(
            rf"^{stem}-([0-9][^-]*?)(?:\.tar\.gz|\.zip|-py|-cp)", item["filename"], re.IGNORECASE
        )
        if match and item.get("upload-time") and not item.get("yanked"):
            version = match[1]
            dates[version] = min(dates.get(version, item["upload-time"]), item["upload-time"])
    return dates


def _version(text: str) -> Version | None:
    try:
        parsed = Version(text)
    except InvalidVersion:
        return None
    return None if parsed.is_prerelease or parsed.is_devrelease else parsed


def window(version: str, dates: dict[str, str]) -> tuple[str | None, str | None]:
    """(upload of `version`, upload of the next final release) on PyPI."""
    this = _version(version)
    if this is None or version not in dates:
        return None, None
    later = [dates[v] for v in dates if (p := _version(v)) is not None and p > this]
    return dates[version], min(later) if later else None


def as_of(dates: dict[str, str], cutoff: str) -> str | None:
    """The version pip's --uploaded-prior-to=`cutoff` picks when nothing pins it: the newest before it."""
    before = [(p, v) for v, t in dates.items() if t < cutoff and (p := _version(v)) is not None]
    return str(max(before)[1]) if before else None


def pinned(spec: dict[str, Any], package: str) -> bool:
    """Whether the published spec names `package` with a version (then the version tells no date)."""
    text = " ".join(
        [str(spec.get("packages", "")), *map(str, spec.get("pip_packages", ())), *spec.get("pre_install", ())]
    )
    return re.search(rf"(?<![\w-]){re.escape(package)}\s*(==|=|<|>|~)", text, re.IGNORECASE) is not None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--cutoff",
        default=None,
        help="one cut-off to compare (default: ours, recipes.packages_as_of per repo/version)",
    )
    args = parser.parse_args()

    rows = {
        row["instance_id"]: row for row in map(json.loads, (args.data / "swebench_verified.jsonl").open())
    }
    per_instance: dict[str, dict[str, set[str]]] = {}
    texts: dict[str, str] = {}
    for path in sorted((args.data / "trajectories").glob("*/*.traj.json")):
        instance_id = path.name.removesuffix(".traj.json")
        text = path.read_text(errors="replace")
        found = observed(text)
        if found and instance_id in rows:
            per_instance[instance_id], texts[instance_id] = found, text

    packages = sorted({name for found in per_instance.values() for name in found} - {"python"})
    dates = {name: release_dates(name) for name in packages}
    instances: dict[str, Any] = {}
    differ: dict[str, list[str]] = {}
    for instance_id, found in sorted(per_instance.items()):
        row = rows[instance_id]
        spec = spec_for(row["repo"], row["version"])
        cutoff = args.cutoff or packages_as_of(row["repo"], row["version"])
        text = texts[instance_id]
        entries: dict[str, Any] = {}
        for name, versions in sorted(found.items()):
            # several versions, or a `pip install` of it by the agent: not (only) the image's
            own = name == row["repo"].split("/")[1]  # pytest's own repository installs its own pytest
            if name == "python" or own or len(versions) != 1 or agent_installed(name, text):
                entries[name] = {"observed": sorted(versions), "evidence": False}
                continue
            version = next(iter(versions))
            first, following = window(version, dates[name])
            entries[name] = {
                "observed": version,
                "uploaded": first,
                "next_release": following,
                "pinned_by_spec": pinned(spec, name),
                "evidence": first is not None,
            }
        # every observed version existed when the image was built; a package whose next release also
        # existed by then was held back by some pin (the spec's, a requirements file's, setup.py's), so
        # only the others bound the build from above
        not_before = max((e["uploaded"] for e in entries.values() if e["evidence"]), default=None)
        before = None
        for name, entry in entries.items():
            if not entry["evidence"]:
                continue
            free = not entry["pinned_by_spec"] and (
                entry["next_release"] is None or not_before is None or entry["next_release"] > not_before
            )
            entry["unconstrained"] = free
            if free and entry["next_release"]:
                before = min(before or entry["next_release"], entry["next_release"])
            if free:
                entry["ours_as_of_cutoff"] = ours = as_of(dates[name], cutoff)
                if ours and ours != entry["observed"]:
                    differ.setdefault(instance_id, []).append(
                        f"{name} {entry['observed']} official vs {ours} ours"
                    )
        instances[instance_id] = {
            "repo": row["repo"],
            "version": row["version"],
            "python_official": sorted(found.get("python", ())),
            "packages": entries,
            "built_not_before": not_before,
            "built_before": before,
            "cutoff": cutoff,
        }
    windows = [(v["built_not_before"], v["built_before"]) for v in instances.values()]
    outside = sorted(
        i
        for i, v in instances.items()
        if (v["built_before"] and v["built_before"] <= v["cutoff"])
        or (v["built_not_before"] and v["built_not_before"] > v["cutoff"])
    )
    # how many build windows each candidate cut-off falls in (an instance without a window counts for all)
    candidates = sorted({args.cutoff or PACKAGES_AS_OF, *CANDIDATE_CUTOFFS})
    fits = {
        cutoff: sum(
            (not v["built_not_before"] or v["built_not_before"] < cutoff)
            and (not v["built_before"] or cutoff <= v["built_before"])
            for v in instances.values()
        )
        for cutoff in candidates
    }
    if args.cutoff is None:  # ours: the default and the per-(repo, version) overrides
        fits["ours, per repo/version"] = len(instances) - len(outside)
    described = args.cutoff or (
        f"{PACKAGES_AS_OF}, "
        + ", ".join(f"{r} {v}: {c}" for (r, v), c in sorted(PACKAGES_AS_OF_BY_VERSION.items()))
    )
    result = {
        "benchmark": "official_env_versions",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "compared": "versions printed in official images (mini-swe-agent trajectories) vs what pip "
        f"--uploaded-prior-to resolves (cut-off {described}) for the packages no pin holds back",
        "cutoff": described,
        "instances_with_evidence": len(instances),
        "instances_whose_build_window_excludes_cutoff": outside,
        "instances_with_unpinned_versions_that_differ": differ,
        "instances_whose_window_contains_cutoff": fits,
        "python_versions_official": sorted({p for f in per_instance.values() for p in f.get("python", ())}),
        "latest_not_before": max((a for a, _ in windows if a), default=None),
        "earliest_before": min((b for _, b in windows if b), default=None),
        "instances": instances,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{len(instances)} instances with versions printed in official images; cut-off {described}")
    print(f"{'instance':34} {'built not before':22} {'built before':22} differs from ours")
    for instance_id, value in instances.items():
        print(
            f"{instance_id:34} {str(value['built_not_before'])[:19]:22} {str(value['built_before'])[:19]:22} "
            f"{'; '.join(differ.get(instance_id, []))}"
        )
    print(f"{len(outside)} instance(s) built in a window that excludes the cut-off: {', '.join(outside)}")
    for cutoff, count in fits.items():
        print(f"cut-off {cutoff}: inside the build window of {count} / {len(instances)} instances")


if __name__ == "__main__":
    main()
