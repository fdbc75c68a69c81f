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
K · 8 · p² exceeds the whole of ``memory``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigError

__all__ = ["ENGINES", "EngineChoice", "choose_engine", "available_memory", "human_bytes"]

ENGINES = ("auto", "gram", "rows")
_GRAM_SHARE = 4  # the fold Grams may take a quarter of the memory


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


def choose_engine(requested: str, *, sparse: bool, n_features: int, n_train: int, k: int, memory: int,
                  memory_name: str = "the smallest worker's memory limit") -> EngineChoice:
    """The engine for a problem of ``n_features`` columns and ``n_train`` training rows per fold (module docstring).

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
        if grams > memory:
            raise ConfigError(
                f"model.engine: gram cannot run: the {k} fold Grams of p = {p:,} features take {human_bytes(grams)}, "
                f"more than {memory_name} ({human_bytes(memory)}); use model.engine: rows (or auto), or give the "
                "workers more memory.")
        # a wide problem on Grams forms and factors p × p matrices where the rows engine works on n × p rows: a
        # 200 × 5,000 binomial sweep ran for over 20 minutes where auto (rows) took 21 s (the fifth probe)
        slower = (f"; auto would choose rows here ({'; '.join(against)}), far faster: set model.engine: auto"
                  if against else "")
        return EngineChoice("gram", f"requested; {size.replace('would take', 'takes')}{slower}")
    if requested == "rows":  # tall dense data: one pass of statistics serves every fit (50,000 × 1,000: 95 s → 10 s)
        return EngineChoice("rows", "requested" if against else f"requested; auto would choose gram here (p = {p:,} ≤ "
                            f"n = {n_train:,}; {k} fold Grams take {human_bytes(grams)}), far faster on tall data: set "
                            "model.engine: auto")
    if against:
        return EngineChoice("rows", "; ".join([*against, size]))
    return EngineChoice("gram", f"p = {p:,} ≤ n = {n_train:,}; {k} fold Grams take {human_bytes(grams)}")


def available_memory() -> int:
    """Bytes of memory available to this process now (psutil, which distributed depends on)."""
    import psutil

    return int(psutil.virtual_memory().available)
