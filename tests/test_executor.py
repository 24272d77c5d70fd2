"""The in-process executor and `OnNode`, without Ray: what `--executor local` runs, and how a node-local
object travels (as its factory) and is built once per process."""

from __future__ import annotations

import os
import pickle
import threading

import pytest

from patchfleet.executor import LocalExecutor, OnNode


def where(_: object) -> tuple[int, str]:
    return os.getpid(), threading.current_thread().name


def test_local_run_is_the_callers_own_thread_and_map_keeps_order():
    executor = LocalExecutor()
    assert executor.run(where, None) == (os.getpid(), threading.current_thread().name)
    assert executor.map(lambda x: x * x, range(7), workers=3) == [x * x for x in range(7)]
    assert {pid for pid, _ in executor.map(where, range(4), workers=2)} == {os.getpid()}
    assert executor.relay(print) is print  # nothing to relay: units share this process


def test_local_map_raises_the_units_own_exception():
    def unit(x: int) -> int:
        if x == 2:
            raise ValueError("two")
        return x

    with pytest.raises(ValueError, match="two"):
        LocalExecutor().map(unit, range(4), workers=2)


class Engine:
    """Stands for a Docker client: something of the machine, never to be copied."""

    made = 0

    def __init__(self) -> None:
        Engine.made += 1
        self.pid = os.getpid()
        self._reaped = 0  # private attributes are the object's too

    def __reduce__(self):
        raise TypeError("an engine does not travel")


def make_engine() -> Engine:
    return Engine()


def test_on_node_travels_as_its_factory_and_is_built_once_per_process():
    driver = Engine()
    here = OnNode("engine:test-a", make_engine, value=driver)
    assert here.get() is driver and here.pid == os.getpid()  # attributes go to the object
    assert here._reaped == 0
    Engine.made = 0
    copies = [pickle.loads(pickle.dumps(here)) for _ in range(3)]  # the engine itself would refuse
    assert Engine.made == 0  # built where used, not when unpickled
    assert copies[0].get() is not driver
    assert {id(c.get()) for c in copies} == {id(copies[0].get())} and Engine.made == 1
    with pytest.raises(TypeError, match="does not travel"):
        pickle.dumps(driver)
