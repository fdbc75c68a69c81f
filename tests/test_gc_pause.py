"""pipeline.gc_pause: the collector is off inside, and afterwards as it was before, also after an error."""

from __future__ import annotations

import gc

import pytest

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
