"""Fine-tune the shipped default on a few labelled structures of another family (half-Heuslers).

The default learned from Togo15's rocksalt, zincblende and wurtzite compounds; on half-Heuslers
it predicts about 2x too high. This fine-tunes one of its members on N labelled half-Heuslers and
compares both on the held-out ones. Your own data: an extxyz with ``info["ltc"]`` and
``info["id"]``, read by ``load_dataset("my_kappa.extxyz")``.

Run: python examples/finetune_shipped.py [--n-train 30] [--epochs 200]
"""

from __future__ import annotations

import argparse

import numpy as np

from matgl_ltc import LTCModel, load_dataset
from matgl_ltc.data import Split, random_splits
from matgl_ltc.model import model_folders
from matgl_ltc.pretrained import DEFAULT_MODEL
from matgl_ltc.train import fit

parser = argparse.ArgumentParser()
parser.add_argument("--n-train", type=int, default=30, help="labelled structures to fine-tune on")
parser.add_argument("--epochs", type=int, default=200)
parser.add_argument("--out", default="runs/example-finetune")
args = parser.parse_args()

data = load_dataset("hh143")
held_out = random_splits(data.ids, n_splits=1)[0]  # 80/20, seeded; its 20 % stay unseen
split = Split(held_out.train[: args.n_train], held_out.validation)

member = LTCModel.load(model_folders(DEFAULT_MODEL)[0])  # split 0's member of the shipped ensemble
val = data.indices(split.validation)
before = member.predict([data.atoms[i] for i in val])

result = fit(member, data, split, epochs=args.epochs, batch_size=16, out_dir=args.out, progress=False)
after = LTCModel.load(f"{args.out}/model").predict([data.atoms[i] for i in val])


def log10_mae(kappa: np.ndarray) -> float:
    return float(np.mean(np.abs(np.log10(kappa / data.labels[val]))))


print(f"{len(val)} held-out half-Heuslers, log10-MAE (a typical error of a factor 10^x):")
print(f"  shipped member, as shipped:           {log10_mae(before):.3f}")
print(f"  fine-tuned on {len(split.train)} half-Heuslers:      {log10_mae(after):.3f}")
for i, k_before, k_after in list(zip(val, before, after))[:5]:
    print(
        f"  {data.ids[i]:12s} true {data.labels[i]:6.2f}  shipped {k_before:6.2f}  fine-tuned {k_after:6.2f} W/m/K"
    )
