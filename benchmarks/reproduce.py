"""The paper's table, measured: every recipe × dataset over 9 splits, both protocols, wall time and peak memory.

Usage::

    python benchmarks/reproduce.py [--paper] [--recipes ...] [--datasets ...] [--n-splits 9] [--epochs N]

Each recipe × dataset cell runs in its own process, so its peak RSS is its own. Writes
``benchmarks/out/reproduce/`` (all runs, shared AFLOW stages, ``cells/*.json``),
``benchmarks/reproduce-table.md`` and ``benchmarks/out/reproduce.json``. Rerunning resumes:
finished stages are skipped, and a cell that already has a record (in ``cells/`` or in
``out/reproduce.json``) is not rerun: delete its record to measure it again.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from matgl_ltc.analysis.plots import recipes_figure
from matgl_ltc.train.recipes import resolve_recipe
from matgl_ltc.train.reproduce import PAPER_MAPE, REPRODUCE_RECIPES, reproduce

HERE = Path(__file__).resolve().parent


def run_cell(out: Path, recipe: str, dataset: str, args: argparse.Namespace) -> None:
    """Train one recipe on one dataset in this process and record wall time and peak RSS."""
    started = time.perf_counter()
    table = reproduce(out, [recipe], [dataset], args.n_splits, args.epochs, args.paper, progress=False)
    summary = table[dataset][recipe]
    summary["call_wall_time_s"] = time.perf_counter() - started
    # A cell whose stages were all trained earlier measures nothing: leave its peak blank.
    trained = summary["wall_time_s"] > 0
    summary["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 if trained else None
    cells = out / "cells"
    cells.mkdir(exist_ok=True)
    (cells / f"{recipe}-{dataset}.json").write_text(json.dumps(summary, indent=1))


def fmt(summary: dict, protocol: str, metric: str) -> str:
    v = summary[protocol].get(metric)
    return f"{v['mean']:.3f} ± {v['std']:.3f}" if v else "—"


def table_markdown(cells: dict[tuple[str, str], dict], n_splits: int) -> str:
    metrics = ["mape", "median_ape", "mae", "rmse", "r2", "log10_mae", "spearman"]
    head = " | ".join(f"{m} best / final" for m in metrics)
    lines = [
        f"Mean ± std over {n_splits} validation splits; *best* = epoch chosen on the validation split "
        "(the paper's protocol), *final* = last epoch of the fixed schedule (unbiased).",
        "",
        f"| dataset | recipe | paper MAPE | {head} | training time (s) | peak RSS (MB) |",
        "| --- | --- | --- | " + " | ".join("---" for _ in metrics) + " | --- | --- |",
    ]
    for (recipe, dataset), s in cells.items():
        paper = PAPER_MAPE.get(dataset, {}).get(recipe, "—")
        row = " | ".join(f"{fmt(s, 'best_epoch', m)} / {fmt(s, 'unbiased', m)}" for m in metrics)
        peak = f"{s['peak_rss_mb']:.0f}" if s.get("peak_rss_mb") else "—"
        lines.append(
            f"| {dataset} | {recipe} | {paper} | {row} | {s.get('training_time_s', 0):.0f} | {peak} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipes", nargs="+", default=list(REPRODUCE_RECIPES))
    parser.add_argument("--datasets", nargs="+", default=["togo15", "hh143", "mix"])
    parser.add_argument("--n-splits", type=int, default=9)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--paper", action="store_true")
    parser.add_argument("--cell", nargs=2, metavar=("RECIPE", "DATASET"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    out = HERE / "out" / ("reproduce-paper" if args.paper else "reproduce")
    if args.cell:
        run_cell(out, *args.cell, args)
        return

    suffix = "-paper" if args.paper else ""
    record_json = HERE / "out" / f"reproduce{suffix}.json"
    # cells recorded by earlier runs stay in the table: their run folders are gitignored and
    # may be gone, and retraining them would take hours
    cells: dict[tuple[str, str], dict] = {}
    if record_json.is_file():
        for key, summary in json.loads(record_json.read_text())["results"].items():
            recipe, _, dataset = key.rpartition("/")
            cells[(recipe, dataset)] = summary
    for dataset in args.datasets:
        for recipe in args.recipes:
            record = out / "cells" / f"{recipe}-{dataset}.json"
            if (recipe, dataset) in cells and not record.is_file():
                continue
            if not record.is_file():
                cmd = [sys.executable, __file__, "--cell", recipe, dataset, "--n-splits", str(args.n_splits)]
                cmd += ["--paper"] if args.paper else []
                cmd += ["--epochs", str(args.epochs)] if args.epochs else []
                print(f"== {recipe} on {dataset}", flush=True)
                subprocess.run(cmd, check=True)
            cells[(recipe, dataset)] = json.loads(record.read_text())

    figures = HERE / "figures"
    figures.mkdir(exist_ok=True)
    for dataset in args.datasets:
        runs = {recipe: out / recipe / dataset for recipe, d in cells if d == dataset}
        # a seed-member recipe's first member has the same curve as its one-member recipe
        single = {r: run for r, run in runs.items() if resolve_recipe(r, paper=args.paper).members == 1}
        missing = [r for r, run in single.items() if not run.is_dir()]
        if missing:  # redrawn without them, the figure would lose curves it shows
            print(f"kept figures/recipes-{dataset}.png: no run folder here for {', '.join(missing)}")
        else:
            recipes_figure(
                single, figures / f"recipes-{dataset}.png", f"{dataset}: validation MAPE per epoch"
            )
        for recipe, run in runs.items():  # each run's own figures, next to the table
            for name in ("learning_curve", "parity") if recipe in single else ("parity",):
                if (run / f"{name}.png").exists():
                    shutil.copy(run / f"{name}.png", figures / f"{recipe}-{dataset}-{name}.png")
    datasets = list(dict.fromkeys(d for _, d in cells))  # rows grouped by dataset, as first met
    cells = dict(sorted(cells.items(), key=lambda item: datasets.index(item[0][1])))
    md = table_markdown(cells, args.n_splits)
    (HERE / f"reproduce-table{suffix}.md").write_text(md)
    record_json.write_text(
        json.dumps(
            {
                "paper_mape": PAPER_MAPE,
                # the cells' shared settings (each run adds or keeps cells, so not its recipe list)
                "settings": {k: getattr(args, k) for k in ("n_splits", "epochs", "paper")},
                "results": {f"{r}/{d}": s for (r, d), s in cells.items()},
            },
            indent=1,
        )
    )
    print(md)


if __name__ == "__main__":
    main()
