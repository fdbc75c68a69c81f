"""Work run at a lowered CPU priority (pipeline.background): results, errors, and whose priority changes."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from pipeline.background import BACKGROUND_NICE, lower_this_thread, run_in_background, start_in_background

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")


def _my_nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_the_caller_gets_the_result_and_the_error_of_the_work() -> None:
    assert run_in_background(lambda: 6 * 7, "answer") == 42

    def broken() -> None:
        raise LookupError("no such store")

    with pytest.raises(LookupError, match="no such store"):
        run_in_background(broken, "broken")


@linux_only
def test_only_the_work_thread_is_lowered_and_the_caller_keeps_its_priority() -> None:
    before = _my_nice()
    seen = run_in_background(_my_nice, "nice")
    assert seen == min(19, before + BACKGROUND_NICE)
    assert _my_nice() == before  # the caller's later work runs as before


@linux_only
def test_a_started_thread_runs_lowered_and_so_do_the_threads_it_starts() -> None:
    before = _my_nice()
    seen: list[int] = []

    def work() -> None:
        seen.append(_my_nice())
        child = threading.Thread(target=lambda: seen.append(_my_nice()))
        child.start()
        child.join()

    start_in_background(work, "preload").join()
    assert seen == [min(19, before + BACKGROUND_NICE)] * 2
    assert _my_nice() == before


@linux_only
def test_lowering_stops_at_the_lowest_priority() -> None:
    def twice() -> int:
        assert lower_this_thread(15) and lower_this_thread(15)
        return _my_nice()

    assert run_in_background(twice, "floor") == 19
