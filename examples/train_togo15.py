"""Train an LTC model on one split of Togo15 from the formation-energy MEGNet and predict with it.

Run: python examples/train_togo15.py [--epochs N]
"""

from __future__ import annotations

import argparse

from ase.build import bulk

from matgl_ltc import LTCModel, load_dataset
from matgl_ltc.train import fit

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=300)
parser.add_argument("--out", default="runs/example-togo15")
args = parser.parse_args()

data = load_dataset("togo15")
model = LTCModel.from_backbone("megnet-eform")
result = fit(model, data, split=0, epochs=args.epochs, out_dir=args.out, progress=True)
print({k: round(v, 3) for k, v in result.metrics["validation"].items()})

reloaded = LTCModel.load(f"{args.out}/model")
for name, atoms in {"Si": bulk("Si", "diamond", a=5.43), "NaCl": bulk("NaCl", "rocksalt", a=5.64)}.items():
    print(f"{name}: {reloaded.predict_structure(atoms):.1f} W/m/K")
