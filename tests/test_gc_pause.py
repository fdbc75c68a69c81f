"""pipeline.gc_pause: the collector is off inside, and afterwards as it was before, also after an error."""

from __future__ import annotations

import gc

import pytest

from pipeline import gc_pause
from pipeline.gc_pause import collector_paused


@pytest.mark.parametrize("before", [True, False])
def test_the_collector_is_paused_inside_and_restored_after(before: bool) -> None:
    was = gc.isenabled()
    try:
        gc.enable() if before else gc.disable()
        with collector_paused():
            assert not gc.isenabled()
        assert gc.isenabled() is before
        with pytest.raises(RuntimeError), collector_paused():
            raise RuntimeError("an import failed")
        assert gc.isenabled() is before
    finally:
        gc.enable() if was else gc.disable()


def test_what_the_step_leaves_alive_is_frozen_only_in_a_process_that_ends_with_its_sweep(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Without :func:`freeze_after_steps` (a notebook's process) nothing is frozen; with it (the CLI, the MLflow
    process) objects created inside move to the permanent generation, which later collections skip."""
    gc.unfreeze()
    monkeypatch.setattr(gc_pause, "_freeze", False)
    with collector_paused():
        kept = [[i] for i in range(5000)]  # tracked containers, as an import's objects are
    assert gc.get_freeze_count() == 0
    gc_pause.freeze_after_steps()
    with collector_paused():
        made = [[i] for i in range(5000)]
    assert gc.get_freeze_count() >= len(made) + len(kept)
    oldest = {id(o) for o in gc.get_objects(generation=2)}
    assert all(gc.is_tracked(m) and id(m) not in oldest for m in made)
    gc.unfreeze()
