"""Turn a recipe run into a shipped, calibrated ensemble with a model card.

Usage::

    python scripts/package_pretrained.py runs/shipped/two-stage-togo15 LTC-MEGNet-Togo15-2stage \\
        --dataset togo15 --description "..."

The ensemble is written to ``src/matgl_ltc/pretrained/<name>/`` (one member folder per split,
``ensemble.json``, ``README.md``) by :func:`matgl_ltc.train.package_run`, which ``matgl-ltc
package`` runs for any folder; σ is recalibrated on held-out validation residuals.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from matgl_ltc.train import package_run

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "matgl_ltc" / "pretrained"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run")
    parser.add_argument("name")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--description", default="")
    args = parser.parse_args()
    ensemble = package_run(args.run, PACKAGE / args.name, args.name, args.dataset, args.description)
    print(f"wrote {PACKAGE / args.name} (sigma_scale {ensemble.sigma_scale:.3f})")


if __name__ == "__main__":
    main()
