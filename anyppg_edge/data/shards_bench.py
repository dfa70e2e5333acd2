"""Shard I/O benchmark: ``python -m anyppg_edge.data.shards_bench [--n-windows 100000] [--json out.json]``.

Writes synthetic float16 windows in the shard format (a valid index included), then reads them back
through :meth:`~anyppg_edge.data.shards.ShardDataset.get_batch` in random-order and sequential
batches, cold (page cache dropped where the OS allows) and warm, and prints windows/s.
"""

from __future__ import annotations

import argparse

from anyppg_edge.data.shards import benchmark_shards


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m anyppg_edge.data.shards_bench", description=__doc__)
    ap.add_argument("--n-windows", type=int, default=100_000)
    ap.add_argument("--windows-per-shard", type=int, default=2880)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--out-dir", default=None, help="folder for the shards (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the written shards")
    ap.add_argument("--json", default="runs/shards_bench.json", help="where to write the figures")
    args = ap.parse_args(argv)
    res = benchmark_shards(
        n_windows=args.n_windows,
        out_dir=args.out_dir,
        windows_per_shard=args.windows_per_shard,
        batch_size=args.batch_size,
        keep=args.keep,
        json_path=args.json,
    )
    print(
        f"{res['n_windows']:,} windows in {res['n_shards']} shards, "
        f"{res['shard_bytes_on_disk'] / 1e6:.1f} MB on disk ({res['bytes_per_window']:.0f} B/window, "
        f"{res['mb_per_hour_of_recording']:.2f} MB per hour of recording)"
    )
    print(f"write              {res['write_windows_per_s']:>12,.0f} windows/s")
    for key in ("random_cold", "sequential_cold", "random", "sequential"):
        if f"{key}_windows_per_s" in res:
            label = key.replace("_cold", " (cold)") if "cold" in key else key + " (warm)"
            print(
                f"{label:<18} {res[key + '_windows_per_s']:>12,.0f} windows/s (get_batch, batch {res['batch_size']})"
            )
    print(f"__getitem__        {res['getitem_windows_per_s']:>12,.0f} windows/s (torch tensors, one by one)")
    print(f"bar {res['bar_windows_per_s']:,} windows/s: {'met' if res['meets_bar'] else 'NOT met'}")
    if args.json:
        print(f"figures written to {args.json}")
    return res


if __name__ == "__main__":
    main()
