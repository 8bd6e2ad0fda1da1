"""Screen a structure database for low-κ candidates, then analyse what the scan found.

Run: python examples/screen_database.py INPUT [--model NAME|PATH] [--out DIR] [--limit N]
(INPUT: an extxyz, a CIF folder or an ase.db, e.g. ../shared/data/mp_stable_scan.extxyz)
"""

from __future__ import annotations

import argparse
from itertools import islice
from pathlib import Path

from matgl_ltc.analysis.screening_report import analyze
from matgl_ltc.data import iter_structures
from matgl_ltc.screening import scan

parser = argparse.ArgumentParser()
parser.add_argument("input")
parser.add_argument("--model", default=None)
parser.add_argument("--out", default="runs/screen-example")
parser.add_argument("--limit", type=int, default=None, help="only the first N structures")
args = parser.parse_args()

out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)
# scan() streams: here we cut the stream to --limit structures without loading the rest
records = (r.atoms for r in islice(iter_structures(args.input), args.limit) if r.atoms is not None)
summary = scan(records, out / "scan.csv", args.model)
print(summary.line())

report = analyze(out / "scan.csv", out / "analysis", training_sets=["togo15", "hh143"], top=10)
print("strongest correlations of mTC:")
for row in report["mTC"][:3]:
    print(f"  {row['feature']:<16} r = {row['pearson_r']:+.3f} (p = {row['pearson_p']:.1e})")
print("lowest-κ candidates:")
for c in report["candidates"][:5]:
    print(f"  {c['formula']:<12} {c['ltc_mean']:7.3f} ± {c['ltc_std']:.3f} W/m/K")
print(f"tables and figures in {out / 'analysis'}")
