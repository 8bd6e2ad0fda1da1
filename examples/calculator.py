"""The ASE calculator: κ_L as a property of Atoms, cached and invalidated like any ASE result.

Run: python examples/calculator.py [--model NAME|PATH]
"""

from __future__ import annotations

import argparse

from ase.build import bulk

from matgl_ltc import LTCCalculator

parser = argparse.ArgumentParser()
parser.add_argument("--model", default=None)
args = parser.parse_args()

atoms = bulk("GaAs", "zincblende", a=5.653)
atoms.calc = LTCCalculator(args.model)
print(f"GaAs: κ_L = {atoms.calc.get_property('ltc', atoms):.2f} ± {atoms.calc.get_ltc_std(atoms):.2f} W/m/K")
print("members:", [round(float(x), 2) for x in atoms.calc.get_property("ltc_members", atoms)])

# strain the cell by 2 %: the cached result is invalidated and κ_L recomputed
atoms.set_cell(atoms.cell * 1.02, scale_atoms=True)
print(f"GaAs strained 2 %: κ_L = {atoms.calc.get_property('ltc', atoms):.2f} W/m/K")
