"""`DockerConfig.limit` / `limited`: the sandbox section's resource limits reach sandboxes whose spec
another module made (selection's matrix, regression discovery, test writers), and the wrapped backend
travels to a Ray worker as it is."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field

from patchfleet.sandbox.base import Network, SandboxSpec
from patchfleet.sandbox.config import DockerConfig, LimitedStarter


@dataclass
class Recorder:
    """A backend that records the specs it is asked to start (and starts nothing)."""

    specs: list[SandboxSpec] = field(default_factory=list)

    def start(self, spec: SandboxSpec) -> str:
        self.specs.append(spec)
        return f"sandbox of {spec.image}"


def test_the_limits_replace_the_specs_defaults_and_the_rest_stays():
    config = DockerConfig(cpus=0.5, memory="1g", pids_limit=64, tmp_size="64m", user="nobody")
    spec = SandboxSpec(image="img:1", labels={"role": "selection"}, base_commit="abc", env={"A": "1"})
    limited = config.limit(spec)
    assert (limited.cpus, limited.memory, limited.pids_limit) == (0.5, "1g", 64)
    assert (limited.tmp_size, limited.user) == ("64m", "nobody")
    # what the caller chose stays: selection runs tests offline whatever the agents' network is
    assert (limited.network, limited.base_commit, limited.labels, limited.env) == (
        Network.NONE,
        "abc",
        {"role": "selection"},
        {"A": "1"},
    )
    assert DockerConfig(network=Network.BRIDGE).limit(spec).network is Network.NONE
    # the defaults agree with SandboxSpec's: an unconfigured run starts what it started before
    assert DockerConfig().limit(spec) == spec


def test_a_limited_backend_starts_through_the_backend_and_pickles():
    backend = Recorder()
    starter = DockerConfig(cpus=3.0, memory=None).limited(backend)
    assert isinstance(starter, LimitedStarter)
    assert starter.start(SandboxSpec(image="img:2")) == "sandbox of img:2"
    assert [(s.cpus, s.memory) for s in backend.specs] == [(3.0, None)]
    copy = pickle.loads(pickle.dumps(starter))  # as a Ray unit carries it
    copy.start(SandboxSpec(image="img:3", cpus=8.0))
    assert [(s.image, s.cpus) for s in copy.backend.specs] == [("img:2", 3.0), ("img:3", 3.0)]
