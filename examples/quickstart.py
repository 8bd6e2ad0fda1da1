"""Quick start: κ_L with its uncertainty for a few crystals, with the default shipped ensemble.

Run: python examples/quickstart.py [--model NAME|PATH]
"""

from __future__ import annotations

import argparse

from ase.build import bulk
from pymatgen.core import Lattice, Structure

import matgl_ltc

parser = argparse.ArgumentParser()
parser.add_argument("--model", default=None, help="model name or folder (default: the shipped default)")
args = parser.parse_args()

print("available:", ", ".join(matgl_ltc.list_models()))
ensemble = matgl_ltc.load_model(args.model)

crystals = [
    bulk("Si", "diamond", a=5.431),
    bulk("PbTe", "rocksalt", a=6.462),
    Structure(
        Lattice.cubic(4.212),
        ["Mg"] * 4 + ["O"] * 4,
        [
            [0, 0, 0],
            [0.5, 0.5, 0],
            [0.5, 0, 0.5],
            [0, 0.5, 0.5],
            [0.5, 0.5, 0.5],
            [0, 0, 0.5],
            [0, 0.5, 0],
            [0.5, 0, 0],
        ],
    ),  # pymatgen works too
]
pred = ensemble.predict(crystals)
# the point estimate the ensemble was scored with: the geometric blend with its descriptor
# boosters for the default; pred.mean is the paper's mTC (the arithmetic one)
estimate = ensemble.default_estimate
print(f"{ensemble.metadata.get('name')}: κ_L ({estimate}) ± calibrated σ")
for structure, kappa, std, ood in zip(crystals, pred.estimate(estimate), pred.std, pred.out_of_domain):
    formula = (
        structure.get_chemical_formula() if hasattr(structure, "get_chemical_formula") else structure.formula
    )
    print(f"{formula:<10} κ_L = {kappa:8.2f} ± {std:6.2f} W/m/K{'  (out of domain)' if ood else ''}")
