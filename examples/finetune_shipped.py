"""Fine-tune the shipped default on a few labelled structures of another family (half-Heuslers).

The default learned from Togo15's rocksalt, zincblende and wurtzite compounds; on half-Heuslers
it predicts about 2x too high. This fine-tunes one of its members on N labelled half-Heuslers and
compares both on the held-out ones. Your own data: an extxyz with ``info["ltc"]`` and
``info["id"]``, read by ``load_dataset("my_kappa.extxyz")``.

With ``--replay`` it also fine-tunes the member while replaying the Togo15 structures it was
trained on, and scores all three on the Togo15 crystals the member never saw: fine-tuned alone it
forgets Togo15's scale, with replay it forgets less (``matgl-ltc train --recipe
finetune-shipped-replay`` does this for every split; measured over all of them in
docs/training.md).

Run: python examples/finetune_shipped.py [--n-train 30] [--epochs 200] [--replay]
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
parser.add_argument("--replay", action="store_true", help="also fine-tune while replaying Togo15")
args = parser.parse_args()

data = load_dataset("hh143")
held_out = random_splits(data.ids, n_splits=1)[0]  # 80/20, seeded; its 20 % stay unseen
split = Split(held_out.train[: args.n_train], held_out.validation)

shipped = model_folders(DEFAULT_MODEL)[0]  # split 0's member of the shipped ensemble
member = LTCModel.load(shipped)
val = data.indices(split.validation)
before = member.predict([data.atoms[i] for i in val])

result = fit(member, data, split, epochs=args.epochs, batch_size=16, out_dir=args.out, progress=False)
after = LTCModel.load(f"{args.out}/model").predict([data.atoms[i] for i in val])


def log10_mae(kappa: np.ndarray, true: np.ndarray | None = None) -> float:
    return float(np.mean(np.abs(np.log10(kappa / (data.labels[val] if true is None else true)))))


print(f"{len(val)} held-out half-Heuslers, log10-MAE (a typical error of a factor 10^x):")
print(f"  shipped member, as shipped:           {log10_mae(before):.3f}")
print(f"  fine-tuned on {len(split.train)} half-Heuslers:      {log10_mae(after):.3f}")
for i, k_before, k_after in list(zip(val, before, after))[:5]:
    print(
        f"  {data.ids[i]:12s} true {data.labels[i]:6.2f}  shipped {k_before:6.2f}  fine-tuned {k_after:6.2f} W/m/K"
    )

if args.replay:
    togo15 = load_dataset("togo15")
    togo_split = random_splits(togo15.ids, n_splits=1)[0]  # the split this member was trained on
    replayed = fit(
        LTCModel.load(shipped),  # fit trains the model it is given: start again from the shipped one
        data,
        split,
        epochs=args.epochs,
        batch_size=16,
        replay=togo15.subset(togo_split.train),  # all of togo15 when you are not measuring this
        progress=False,
    ).model
    unseen = togo15.indices(togo_split.validation)
    crystals, true = [togo15.atoms[i] for i in unseen], togo15.labels[unseen]
    print(
        f"\nwith Togo15 replayed: {log10_mae(replayed.predict([data.atoms[i] for i in val])):.3f} on the half-Heuslers"
    )
    print(f"{len(unseen)} Togo15 crystals the member never saw, log10-MAE:")
    for name, model in (
        ("shipped", LTCModel.load(shipped)),
        ("fine-tuned", LTCModel.load(f"{args.out}/model")),
        ("fine-tuned, replay", replayed),
    ):
        print(f"  {name + ':':20s} {log10_mae(model.predict(crystals), true):.3f}")
