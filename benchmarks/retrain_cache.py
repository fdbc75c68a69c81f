"""What the block-statistics cache saves a retrain over old + new data.

Run:  python benchmarks/retrain_cache.py [--old-files 8] [--rows-per-file 250000] [--features 20]
                                         [--format parquet|csv] [--repeats 3] [--out PATH]

Writes ``old-files`` files of data plus one new file (same size) to a
temporary directory, then times the statistics step of ``regsweep retrain``
(:func:`pipeline.cv.collect_stats` after fingerprinting every block, as
a retrain does) on an embedded two-worker LocalCluster:

- **no cache**: every block (old and new) is loaded, validated and reduced;
- **cache**: the old blocks' records are in the cache (a directory), only the
  new file's blocks are loaded; every block is still fingerprinted (its raw
  bytes hashed), which is what the cached run still pays for.

Reports the median wall time of each over ``repeats`` runs and their ratio,
as a Markdown table; appends a JSON line to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def _write(directory: Path, i: int, n: int, p: int, fmt: str) -> None:
    import pandas as pd

    rng = np.random.default_rng(i)
    X = rng.standard_normal((n, p))
    frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(p)])
    frame["y"] = X[:, : min(5, p)].sum(axis=1) + rng.standard_normal(n)
    if fmt == "parquet":
        frame.to_parquet(directory / f"part-{i:04d}.parquet", row_group_size=65_536, index=False)
    else:
        frame.to_csv(directory / f"part-{i:04d}.csv", index=False)


def _stats_once(client, cfg, cache_dir: Path | None) -> tuple[float, float, int]:
    from pipeline.cv import DirCache, block_fingerprints, collect_stats
    from pipeline.retrain import retrain_plan

    t0 = time.perf_counter()
    plan = retrain_plan(cfg)
    fps = block_fingerprints(client, plan)
    t_fp = time.perf_counter() - t0
    cache = DirCache(cache_dir) if cache_dir is not None else None
    stats = collect_stats(client, plan, fps, cfg, cache)
    return time.perf_counter() - t0, t_fp, stats.blocks_read


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--old-files", type=int, default=8)
    ap.add_argument("--rows-per-file", type=int, default=250_000)
    ap.add_argument("--features", type=int, default=20)
    ap.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "retrain_cache.jsonl")
    args = ap.parse_args()

    from pipeline.cv import open_client
    from pipeline.config import load_config

    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        data = tmp / "data"
        data.mkdir()
        for i in range(args.old_files):
            _write(data, i, args.rows_per_file, args.features, args.format)
        # a CSV source is one file: the parts are concatenated (header once), new rows at the end
        source = str(data) if args.format == "parquet" else str(tmp / "all.csv")
        cfg = load_config(None, [f"data.source={source}", "data.target=y", "data.block_rows=65536",
                                 "cluster.dashboard_address=null"])

        def concat() -> None:
            if args.format != "csv":
                return
            with open(source, "wb") as out:
                for j, part in enumerate(sorted(data.glob("*.csv"))):
                    with open(part, "rb") as f:
                        if j:
                            f.readline()
                        shutil.copyfileobj(f, out)

        concat()
        with open_client(cfg.cluster) as client:
            cache_dir = tmp / "cache"
            _stats_once(client, cfg, cache_dir)  # fill the cache with the old blocks
            _write(data, args.old_files, args.rows_per_file, args.features, args.format)
            concat()
            cold, warm, fp = [], [], []
            read_cold = read_warm = 0
            for r in range(args.repeats):
                t, _, read_cold = _stats_once(client, cfg, None)
                cold.append(t)
                run_cache = tmp / f"cache-{r}"
                shutil.copytree(cache_dir, run_cache)  # old blocks only, as before the new file came
                t, t_fp, read_warm = _stats_once(client, cfg, run_cache)
                warm.append(t)
                fp.append(t_fp)

    n_rows = (args.old_files + 1) * args.rows_per_file
    res = {
        "format": args.format, "rows": n_rows, "features": args.features, "old_files": args.old_files,
        "blocks_read_no_cache": read_cold, "blocks_read_cache": read_warm,
        "no_cache_s": statistics.median(cold), "cache_s": statistics.median(warm),
        "fingerprint_s": statistics.median(fp),
        "ratio": statistics.median(cold) / statistics.median(warm), "repeats": args.repeats,
    }
    print("| format | rows (old + new) | p | blocks read: no cache / cache | no cache (s) | cache (s) | of which hashing (s) | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {res['format']} | {n_rows:,} ({args.old_files} + 1 files) | {args.features} | "
          f"{read_cold} / {read_warm} | {res['no_cache_s']:.2f} | {res['cache_s']:.2f} | {res['fingerprint_s']:.2f} | {res['ratio']:.1f}× |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a") as f:
        f.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
