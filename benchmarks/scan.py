"""Screening throughput: ParAIsite's loop (predict_structure per structure per member) vs ``matgl_ltc.scan``.

Usage::

    MATGL_LTC_SHARED=../shared python benchmarks/scan.py [--model NAME|PATH] [--baseline-n 150]

Prints a table (medians over ``--repeats`` runs, default 3) and writes ``benchmarks/out/scan.json``.
Each measurement runs in its own
process so that peak memory (max RSS) is that measurement's alone.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _ensemble(model: str | None, k: int):
    from matgl_ltc import LTCEnsemble, LTCModel, load_model

    if model:
        loaded = load_model(model)
        return loaded if isinstance(loaded, LTCEnsemble) else LTCEnsemble([loaded])
    # weights do not change the cost: k Eform members with the paper's head
    return LTCEnsemble([LTCModel.from_backbone("megnet-eform", seed=s) for s in range(k)])


def _stock_megnet(member):
    """The member's backbone as matgl's own MEGNet (ParAIsite ran matgl's layers, not ours)."""
    from matgl.models import MEGNet

    from matgl_ltc.model.ltc_model import _truncate_output_proj

    megnet = MEGNet(**member.backbone_config)
    _truncate_output_proj(megnet)
    megnet.load_state_dict(member.backbone.state_dict())
    return megnet.eval()


def child_baseline(path: str, n: int, model: str | None, k: int) -> dict:
    """ParAIsite's scan loop: every member converts and predicts every structure on its own."""
    import ase.io
    import torch
    from matgl.ext.pymatgen import Structure2Graph
    from pymatgen.io.ase import AseAtomsAdaptor

    ensemble = _ensemble(model, k)
    stock = [_stock_megnet(member) for member in ensemble.members]
    frames = ase.io.read(path, f":{n}")
    structures = [AseAtomsAdaptor.get_structure(a) for a in frames]
    start = time.perf_counter()
    for structure in structures:
        for member, megnet in zip(ensemble.members, stock):
            converter = Structure2Graph(element_types=member.backbone.element_types, cutoff=member.cutoff)
            g, lat, _ = converter.get_graph(structure)
            g.pbc_offshift = torch.matmul(g.pbc_offset, lat[0])
            g.pos = g.frac_coords @ lat[0]
            with torch.no_grad():
                member.eval()
                float(
                    member.to_kappa(member.head(megnet(g, state_attr=member._state_attr(1)).reshape(1, -1)))
                )
    seconds = time.perf_counter() - start
    return {"structures": len(structures), "seconds": seconds}


def child_scan(
    path: str, model: str | None, k: int, batch_size: int, processes: int, out: Path
) -> dict | None:
    from matgl_ltc.screening import scan

    ensemble = _ensemble(model, k)
    distributed = {"accelerator": "cpu", "devices": processes} if processes > 1 else {}
    start = time.perf_counter()
    summary = scan(
        path,
        out / "scan.csv",
        ensemble,
        batch_size=batch_size,
        progress=False,
        resume=False,
        **distributed,
    )
    seconds = time.perf_counter() - start
    if summary.rank != 0:
        return None
    return {
        "structures": summary.n_ok + summary.n_bad,
        "seconds": seconds,
        "bad": summary.n_bad,
        "processes": processes,
    }


def run_child(kind: str, *args: str, repeats: int = 1) -> dict:
    """Median over ``repeats`` runs (by throughput); every run's numbers are kept under ``runs``."""
    runs = []
    for _ in range(repeats):
        cmd = [sys.executable, __file__, "--child", kind, *args]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    runs.sort(key=lambda r: r["structures"] / r["seconds"])
    return {**runs[len(runs) // 2], "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shared", default=os.environ.get("MATGL_LTC_SHARED", "../shared"))
    parser.add_argument("--model", default=None, help="ensemble to use (default: 9 Eform members)")
    parser.add_argument("--members", type=int, default=9)
    parser.add_argument(
        "--baseline-n", type=int, default=150, help="structures timed for the (slow) baseline"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement; the median is reported")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        kind, *rest = args.child
        model = None if rest[1] == "-" else rest[1]
        result = (
            child_baseline(rest[0], int(rest[3]), model, int(rest[2]))
            if kind == "baseline"
            else child_scan(rest[0], model, int(rest[2]), int(rest[3]), int(rest[4]), Path(rest[5]))
        )
        if result is None:  # a non-zero rank of the distributed scan
            return
        rss = [
            resource.getrusage(who).ru_maxrss / 1024
            for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        ]
        result["max_rss_mb"] = max(rss)  # per process (a second rank is a child process)
        print(json.dumps(result))
        return

    import ase.io

    source = Path(args.shared) / "data" / "mp_stable_scan.extxyz"
    frames = ase.io.read(source, ":")
    work = Path(tempfile.mkdtemp())
    big = work / "mp_stable_x10.extxyz"
    copies = []
    for rep in range(10):
        for a in frames:
            b = a.copy()
            b.info["id"] = f"{a.info['id']}#{rep}"
            copies.append(b)
    ase.io.write(big, copies)
    model = args.model or "-"
    k, batch = str(args.members), str(args.batch_size)
    rows = {
        "baseline loop (ParAIsite)": run_child(
            "baseline", str(source), model, k, str(args.baseline_n), repeats=args.repeats
        ),
        "scan, 1042 structures": run_child(
            "scan", str(source), model, k, batch, "1", str(work / "a"), repeats=args.repeats
        ),
        "scan, 10420 structures": run_child(
            "scan", str(big), model, k, batch, "1", str(work / "b"), repeats=args.repeats
        ),
        "scan, 2 processes, 10420": run_child(
            "scan", str(big), model, k, batch, "2", str(work / "c"), repeats=args.repeats
        ),
    }
    base_rate = rows["baseline loop (ParAIsite)"]["structures"] / rows["baseline loop (ParAIsite)"]["seconds"]
    print(
        f"{'measurement':<30} {'structures':>10} {'seconds':>8} {'struct/s':>9} {'× baseline':>10} {'max RSS MB':>11}"
    )
    for name, r in rows.items():
        r["rate"] = r["structures"] / r["seconds"]
        r["speedup"] = r["rate"] / base_rate
        print(
            f"{name:<30} {r['structures']:>10} {r['seconds']:>8.1f} {r['rate']:>9.1f} {r['speedup']:>10.2f} "
            f"{r['max_rss_mb']:>11.0f}"
        )
    import platform

    import torch

    result = {
        "members": args.members,
        "repeats": args.repeats,
        "model": args.model,
        "batch_size": args.batch_size,
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "results": rows,
    }
    (HERE / "out").mkdir(exist_ok=True)
    (HERE / "out" / "scan.json").write_text(json.dumps(result, indent=1))
    print(f"written {HERE / 'out' / 'scan.json'}")


if __name__ == "__main__":
    main()
