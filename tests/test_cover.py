"""Which slots a batch runs on (:func:`pipeline.cv.cover`): every fold exactly once, replicas in turn; how folds
move to a worker that joined (:func:`pipeline.cv.placement.even_out`)."""

from __future__ import annotations

import itertools
from collections import Counter

from pipeline.cv import FoldSlot, cover
from pipeline.cv.placement import even_out, group_by_worker


def _slots(layout: list[tuple[tuple[int, ...], str]]) -> list[FoldSlot]:
    return [FoldSlot(folds, None, worker) for folds, worker in layout]  # type: ignore[arg-type]


def _folds(slots: list[FoldSlot], chosen: list[int]) -> list[int]:
    return sorted(f for i in chosen for f in slots[i].folds)


def test_a_whole_slot_is_taken_alone_the_least_loaded_one() -> None:
    slots = _slots([((0, 1, 2), "a"), ((0, 1, 2), "b")])
    assert cover(slots, 3, {0: 2, 1: 1}, {}) == [1]
    assert cover(slots, 3, {0: 0, 1: 1}, {}) == [0]


def test_five_folds_on_two_workers_take_the_replica_in_turn() -> None:
    # rows engine: folds 0, 2, 4 on a; 1, 3 and a replica of 4 on b
    slots = _slots([((0,), "a"), ((1,), "b"), ((2,), "a"), ((3,), "b"), ((4,), "a"), ((4,), "b")])
    load = dict.fromkeys(range(len(slots)), 0)
    sent: Counter[str | None] = Counter()
    tasks: Counter[str | None] = Counter()
    for _ in range(10):  # batches that finish before the next is sent: only the turn decides
        chosen = cover(slots, 5, load, sent)
        assert _folds(slots, chosen) == [0, 1, 2, 3, 4]
        for i in chosen:
            sent[slots[i].worker] += 1
            tasks[slots[i].worker] += 1
    assert tasks == {"a": 25, "b": 25}


def test_the_replica_goes_to_the_worker_with_fewer_tasks_in_flight() -> None:
    slots = _slots([((0,), "a"), ((1,), "b"), ((2,), "a"), ((3,), "b"), ((4,), "a"), ((4,), "b")])
    busy_a = {0: 1, 1: 0, 2: 1, 3: 0, 4: 1, 5: 0}
    assert 5 in cover(slots, 5, busy_a, {"b": 100})  # b has sent more, but a is busy now
    busy_b = {0: 0, 1: 1, 2: 0, 3: 1, 4: 0, 5: 1}
    assert 4 in cover(slots, 5, busy_b, {"a": 100})


def test_disjoint_partitions_are_all_taken() -> None:
    slots = _slots([((0, 2), "a"), ((1, 3), "b")])
    assert cover(slots, 4, {0: 5, 1: 0}, {}) == [0, 1]


def test_a_workers_slots_are_one_task_per_thread() -> None:
    # rows engine, binomial or Poisson: folds 0, 2, 4 on a (one thread); 1, 3 on b (two threads)
    slots = _slots([((0,), "a"), ((1,), "b"), ((2,), "a"), ((3,), "b"), ((4,), "a")])
    assert group_by_worker(slots, [0, 1, 2, 3, 4], {"a": 1, "b": 2}) == [[0, 2, 4], [1], [3]]
    assert group_by_worker(slots, [0, 2, 4], {"a": 3}) == [[0], [2], [4]]
    assert group_by_worker(slots, [1, 3], {}) == [[1, 3]]  # a worker not (yet) known: one thread


def test_grouped_tasks_still_take_the_replica_in_turn() -> None:
    """The turns count the slots a worker was sent, not its tasks: with one task per worker, counting tasks
    would leave the replica with the first worker at every tie."""
    slots = _slots([((0,), "a"), ((1,), "b"), ((2,), "a"), ((3,), "b"), ((4,), "a"), ((4,), "b")])
    load = dict.fromkeys(range(len(slots)), 0)
    sent: Counter[str | None] = Counter()
    for _ in range(10):
        groups = group_by_worker(slots, cover(slots, 5, load, sent), {"a": 1, "b": 1})
        assert len(groups) == 2 and sorted(f for g in groups for i in g for f in slots[i].folds) == [0, 1, 2, 3, 4]
        for g in groups:
            sent[slots[g[0]].worker] += len(g)
    assert sent == {"a": 25, "b": 25}


def test_even_out_reaches_the_smallest_largest_share_by_brute_force() -> None:
    """Every layout of up to 15 folds on 3 workers of 1–3 threads: after the moves, the fullest worker's folds
    per thread are the least any layout of the same folds allows; every move goes from a worker to another."""
    for threads in itertools.product((1, 2, 3), repeat=3):
        per = dict(zip("abc", threads))
        for counts in itertools.product(range(6), repeat=3):
            start = dict(zip("abc", counts))
            moves = even_out(start, per)
            end = dict(start)
            for a, b in moves:
                assert a != b
                end[a] -= 1
                end[b] += 1
            assert min(end.values()) >= 0 and sum(end.values()) == sum(counts)
            best = min(max(c / t for c, t in zip(layout, threads))
                       for layout in itertools.product(range(sum(counts) + 1), repeat=3) if sum(layout) == sum(counts))
            assert max(end[w] / per[w] for w in end) == best, (start, per, end)


def test_even_out_gives_a_joined_worker_its_share() -> None:
    assert even_out({"a": 5, "b": 0}) == [("a", "b"), ("a", "b")]  # 3 + 2
    assert even_out({"a": 3, "b": 2}) == []  # already even: nothing moves
    assert even_out({"a": 5}) == []
