"""The paper's table, measured: every recipe × dataset over 9 splits, both protocols, wall time and peak memory.

Usage::

    python benchmarks/reproduce.py [--paper] [--recipes ...] [--datasets ...] [--n-splits 9] [--epochs N]

Writes ``benchmarks/out/reproduce/`` (all runs, shared AFLOW stages), ``benchmarks/reproduce.md`` and
``benchmarks/out/reproduce.json``. Rerunning resumes: finished stages are skipped.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

from matgl_ltc.train.reproduce import reproduce

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipes", nargs="+", default=["scratch", "pretrained", "two-stage", "aflow-only"])
    parser.add_argument("--datasets", nargs="+", default=["togo15", "hh143", "mix"])
    parser.add_argument("--n-splits", type=int, default=9)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--paper", action="store_true")
    args = parser.parse_args()
    out = HERE / "out" / ("reproduce-paper" if args.paper else "reproduce")
    started = time.perf_counter()
    reproduce(out, args.recipes, args.datasets, args.n_splits, args.epochs, args.paper, progress=True)
    wall = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    md = (out / "reproduce.md").read_text()
    md += (
        f"\nThis call: {wall:.0f} s wall time, peak RSS {peak:.0f} MB (stages already trained are skipped).\n"
    )
    (HERE / "reproduce.md").write_text(md)
    data = json.loads((out / "reproduce.json").read_text())
    data.update({"wall_time_s": wall, "peak_rss_mb": peak, "settings": vars(args)})
    (HERE / "out" / "reproduce.json").write_text(json.dumps(data, indent=1))
    print(md)


if __name__ == "__main__":
    main()
