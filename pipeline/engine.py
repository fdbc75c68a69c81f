"""Which engine solves a problem: the p × p Gram of each fold, or the rows themselves.

The Gram engine (one pass over the data, then every fit on K p × p matrices)
is unbeatable on tall data and impossible on wide data: at p = 20,000 one
fold's Gram alone takes 3.2 GB. The rows engine keeps the n × p rows (dense
or sparse) and never forms a p × p matrix (:mod:`pipeline.solvers.rows`).

``auto`` takes ``gram`` iff all three hold:

- the source is dense (a sparse source stays sparse only in the rows engine);
- p ≤ n_train, the smallest fold's training rows (more features than rows is
  the rows engine's home: its working sets never exceed the support);
- K · 8 · p² bytes (the K fold Grams) ≤ ¼ of ``memory``: the smallest
  worker's memory limit in a sweep, the available memory in ``pipeline.fit``.

Forcing ``gram`` is refused, before any work, only when it cannot run: when
the pass's merge of two blocks' K fold Grams into a third, 3 · K · 8 · p²,
exceeds the whole of ``memory``.

Whichever engine runs, a worker reads a whole block at a time: one whose
rows (8 · rows · p bytes, and as much again while they are parsed) cannot fit
beside the Grams is refused too, naming the ``data.block_rows`` that fits
(:func:`check_block_memory`).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigError

__all__ = ["ENGINES", "EngineChoice", "choose_engine", "available_memory", "check_block_memory", "human_bytes",
           "killed_in_pass", "merge_fan_in", "smallest_training_rows", "worker_room"]

ENGINES = ("auto", "gram", "rows")
_GRAM_SHARE = 4  # the fold Grams may take a quarter of the memory
_MERGED_SETS = 3  # a merge holds two blocks' K fold Grams and their sum
_WORKER_BASE = 150_000_000  # a worker's own memory before any data (NumPy, SciPy, pandas, distributed: 148 MB)
_TERMINATE = 0.95  # distributed's nanny kills a worker past this share of its memory limit


@dataclass(frozen=True)
class EngineChoice:
    """The engine that will run, and why (printed, logged as a parameter, kept in the summary)."""

    name: str  # "gram" | "rows"
    reason: str

    def line(self) -> str:
        return f"engine: {self.name} ({self.reason})"


def human_bytes(n: float) -> str:
    """``3.2 GB``-style sizes (powers of 1000, as a user reads them)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def smallest_training_rows(n_rows: int, k: int) -> int:
    """The training rows of the smallest fold's complement, ``n − ⌈n/K⌉`` (row k-fold deals each run of K rows to
    the K folds): the ``n`` that ``p > n`` is judged against."""
    return n_rows - -(-n_rows // k)


def worker_room(memory_limit: int) -> int:
    """What a worker's memory limit leaves for data: the share at which distributed's nanny kills the worker,
    less the worker's own :data:`_WORKER_BASE`."""
    return max(0, int(_TERMINATE * memory_limit) - _WORKER_BASE)


def choose_engine(requested: str, *, sparse: bool, n_features: int, n_train: int, k: int, memory: int,
                  memory_name: str = "the available memory", rows_bytes: int | None = None) -> EngineChoice:
    """The engine for a problem of ``n_features`` columns and ``n_train`` training rows per fold (module docstring).
    ``memory`` is what the data may take (:func:`worker_room` of a worker's limit in a sweep); ``rows_bytes``, what
    the rows engine would keep of them there (every row, dense: a sweep's workers), if known. When the Grams are
    too big for auto's quarter but the rows do not fit at all, the Grams it is, if the pass can hold them: a
    tall 10⁷ × 5,000 sweep in 4 GiB workers was refused for its 400 GB of rows, where the Grams take 1 GB.

    Raises :class:`~pipeline.errors.ConfigError` if ``requested`` is ``gram`` and the K fold Grams cannot
    fit in ``memory`` at all.
    """
    if requested not in ENGINES:
        raise ConfigError(f"model.engine must be one of {', '.join(ENGINES)}, got {requested!r}.")
    p = n_features
    one = 8 * p * p
    grams = k * one
    size = f"a fold Gram would take {human_bytes(one)}"
    against = []
    if sparse:
        against.append("the source is sparse")
    if p > n_train:
        against.append(f"p = {p:,} > n = {n_train:,}")
    if grams * _GRAM_SHARE > memory:
        against.append(f"{k} fold Grams would take {human_bytes(grams)}, more than a quarter of {memory_name} "
                       f"({human_bytes(memory)})")
    if requested == "gram":
        if _MERGED_SETS * grams > memory:  # 5 fold Grams of 32 MB passed the old check (160 MB < 400 MB); the
            #                                pass's workers were killed
            raise ConfigError(
                f"model.engine: gram cannot run: the {k} fold Grams of p = {p:,} features take {human_bytes(grams)}, "
                f"and the pass's merge holds {_MERGED_SETS} such sets ({human_bytes(_MERGED_SETS * grams)}), more "
                f"than {memory_name} ({human_bytes(memory)}); use model.engine: rows (or auto), or give the "
                "workers more memory.")
        # a wide problem on Grams forms and factors p × p matrices where the rows engine works on n × p rows: a
        # 200 × 5,000 binomial sweep ran for over 20 minutes where auto (rows) took 21 s (the fifth probe)
        rows_fit = rows_bytes is None or rows_bytes <= memory
        slower = (f"; auto would choose rows here ({'; '.join(against)}), far faster: set model.engine: auto"
                  if against and rows_fit else "")
        return EngineChoice("gram", f"requested; {size.replace('would take', 'takes')}{slower}")
    if requested == "rows":  # tall dense data: one pass of statistics serves every fit (50,000 × 1,000: 95 s → 10 s)
        return EngineChoice("rows", "requested" if against else f"requested; auto would choose gram here (p = {p:,} ≤ "
                            f"n = {n_train:,}; {k} fold Grams take {human_bytes(grams)}), far faster on tall data: set "
                            "model.engine: auto")
    if against:
        memory_only = not sparse and p <= n_train
        if memory_only and rows_bytes is not None and rows_bytes > memory >= _MERGED_SETS * grams:
            return EngineChoice("gram", f"the rows engine's copy of every row ({human_bytes(rows_bytes)}) would not "
                                f"fit in {memory_name} ({human_bytes(memory)}); {k} fold Grams take "
                                f"{human_bytes(grams)}")
        return EngineChoice("rows", "; ".join([*against, size]))
    return EngineChoice("gram", f"p = {p:,} ≤ n = {n_train:,}; {k} fold Grams take {human_bytes(grams)}")


def merge_fan_in(memory: int, k: int, n_columns: int, most: int = 8) -> int:
    """Block passes merged per task of the Gram engine's pass: ``most``, but no more than half of a worker's
    ``memory`` holds (each pass is K fold Grams, 8 · p² bytes each, and the merge holds its sum too), at least 2.
    With 8 at p = 1,500, K = 5 and 600 MB workers, the merge of 8 blocks (810 MB) killed the workers auto had
    chosen Grams for (450 MB < 600 MB). The tree stays fixed for a given memory, p and K."""
    per = max(1, k * 8 * n_columns * n_columns)
    return int(max(2, min(most, worker_room(memory) // (2 * per) - 1)))


def check_block_memory(block_rows: int, n_columns: int, memory: int, held: int, held_name: str,
                       memory_name: str = "the smallest worker's memory limit") -> None:
    """Refuse a block that cannot be read on a worker: its rows as float64 (8 · rows · p bytes) twice (the
    rows as read, then as the model's numbers) beside what the engine keeps there (``held``: the Gram engine's
    K fold Grams, the rows engine's share of the rows), in what the worker's limit ``memory`` leaves for data
    (:func:`worker_room`). The fix names the ``data.block_rows`` that fits (a 20,000 × 2,000 block of 320 MB
    killed 400 MB workers four times over, and the sweep ended in distributed's ``KilledWorker`` traceback)."""
    room = worker_room(memory) - held
    need = 2 * 8 * block_rows * n_columns
    if need <= room:
        return
    if room < 2 * 8 * 100 * n_columns:  # not even 100 rows beside what the engine keeps: no block size helps
        least = (held + need + _WORKER_BASE) / _TERMINATE
        raise ConfigError(f"{held_name} take{'' if held_name.endswith('Grams') else 's'} {human_bytes(held)} on "
                          f"a worker, more than {memory_name} ({human_bytes(memory)}) leaves for data "
                          f"({human_bytes(worker_room(memory))}) beside the rows being read; give the workers at "
                          f"least {human_bytes(least)} each (cluster.memory_limit).")
    fits = room // (2 * 8 * n_columns)
    fix = f"lower data.block_rows to {_round_down(fits):,} or fewer, or give the workers more memory"
    beside = f" beside {held_name} ({human_bytes(held)})" if held else ""
    size = human_bytes(8 * block_rows * n_columns)
    raise ConfigError(f"a block of {block_rows:,} rows × {n_columns:,} columns takes {size} as float64, twice that "
                      f"while it is read{beside}: more than {memory_name} ({human_bytes(memory)}) leaves for data "
                      f"({human_bytes(worker_room(memory))}); {fix}.")


def killed_in_pass(task: str, block_rows: int, n_columns: int, k: int, memory: int, gram: bool,
                   rows_bytes: int | None = None, ending: str = "No trial ran.") -> str:
    """What to say when distributed gave up on a task of the data pass because the workers running it died
    (``KilledWorker``): most often a worker past its memory limit, killed by its nanny; the sizes of what the
    task held (``rows_bytes``: the copy of every row the rows engine, and every binomial or Poisson sweep,
    keeps on each worker), and the fixes."""
    block = f"a block of {block_rows:,} rows × {n_columns:,} columns takes {human_bytes(8 * block_rows * n_columns)}"
    if rows_bytes is not None:
        held, fixes = f"every row, kept on each worker, takes {human_bytes(rows_bytes)}; {block}", ""
    elif gram:
        held = f"{block} as float64; its {k} fold Grams take {human_bytes(k * 8 * n_columns * n_columns)}"
        fixes = "lower data.block_rows, use model.engine: rows, or "
    else:
        held, fixes = f"{block} as float64", "lower data.block_rows, or "
    return (f"the workers running the data pass's task {task!r} died each time it was tried, most likely out of "
            f"memory (a worker's limit: {human_bytes(memory)}; {held}); {fixes}give the workers more memory "
            f"(cluster.memory_limit); the workers' logs say more. {ending}")


def _round_down(n: int) -> int:
    """``n`` to two significant digits, down (6,250 → 6,200)."""
    scale = 10 ** max(0, len(str(n)) - 2)
    return n // scale * scale


def available_memory() -> int:
    """Bytes of memory available to this process now (psutil, which distributed depends on)."""
    import psutil

    return int(psutil.virtual_memory().available)
