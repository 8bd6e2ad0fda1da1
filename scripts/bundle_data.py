"""Write the package data (compressed datasets, data cards, pretrained MEGNet weights) from the originals.

Usage::

    MATGL_LTC_SHARED=../shared python scripts/bundle_data.py

The originals live outside the repository (``$MATGL_LTC_SHARED/data`` and ``/models``). The
bundled files are what the package reads offline; structures that fail validation (no edge
at MEGNet's 4 Å cutoff, bad label) are left out and listed in the data card.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import shutil
from pathlib import Path

import ase.io
import numpy as np
import torch

from matgl_ltc.data.validation import InvalidStructureError, check_label, validate_atoms

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "matgl_ltc"

SOURCES = {
    "togo15": {
        "title": "Togo15 (ParAIsite Dataset1, 'L96')",
        "what": "Binary rocksalt, zincblende and wurtzite compounds.",
        "label": "phono3py, relaxation-time approximation (RTA) of the linearized Boltzmann equation, 300 K "
        "(high fidelity). Togo et al., Phys. Rev. B 91, 094306 (2015), phonondb.",
        "structures": "Materials Project relaxed structures; `id` is the Materials Project id.",
        "licence": "Labels: published data of Togo et al. (phonondb, CC BY 4.0); structures: Materials Project "
        "(CC BY 4.0). Cite both, and ParAIsite (Klochko & d'Aquin, arXiv:2411.18259) for the curated set.",
    },
    "hh143": {
        "title": "HH143 (ParAIsite Dataset2)",
        "what": "Half-Heusler ABC compounds.",
        "label": "DFT phonons with the Boltzmann transport equation (BTE), 300 K (high fidelity).",
        "structures": "Half-Heusler prototype structures as distributed with ParAIsite; `id` is `hh-<n>`.",
        "licence": "Published scientific data as redistributed by ParAIsite (Klochko & d'Aquin, "
        "arXiv:2411.18259); cite it and the original BTE study.",
    },
    "aflow_agl": {
        "title": "AFLOW AGL",
        "what": "ICSD-derived structures from the AFLOW repository, many chemistries (medium size, low fidelity).",
        "label": "AFLOW-AGL quasi-harmonic Debye-Grüneisen model, kappa at 300 K. Toher et al., Phys. Rev. B "
        "90, 174107 (2014). Labels sit about 9x below phono3py on average but rank materials well. "
        "`label_match` is `exact` (label confirmed against the published AFLOW list) or `formula` "
        "(matched by formula only).",
        "structures": "AFLOW ICSD structures as used by ParAIsite (`aflow_cif`); `id` is the AFLOW prototype name.",
        "licence": "AFLOW data are free to use with citation (Curtarolo et al., Comput. Mater. Sci. 58, 218 "
        "(2012)); cite ParAIsite for the curated set.",
    },
}

MODELS = ("MEGNet-MP-2018.6.1-Eform", "MEGNet-MP-2019.4.1-BandGap-mfi")
MATGL_NOTICE = """These weights are from matgl (Materials Graph Library), https://github.com/materialsvirtuallab/matgl,
redistributed under its BSD 3-Clause licence:

Copyright (c) 2022, Materials Virtual Lab. All rights reserved.

Redistribution and use in source and binary forms, with or without modification, are permitted provided
that the following conditions are met: (1) Redistributions of source code must retain the above copyright
notice, this list of conditions and the following disclaimer. (2) Redistributions in binary form must
reproduce the above copyright notice, this list of conditions and the following disclaimer in the
documentation and/or other materials provided with the distribution. (3) Neither the name of the copyright
holder nor the names of its contributors may be used to endorse or promote products derived from this
software without specific prior written permission.

THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS" AND ANY EXPRESS OR IMPLIED
WARRANTIES ARE DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT HOLDER OR CONTRIBUTORS BE LIABLE FOR ANY DAMAGES
ARISING IN ANY WAY OUT OF THE USE OF THIS SOFTWARE.

Only `state.pt` (a plain tensor state dict, loadable with torch.load(weights_only=True)) and
`model.json` are kept; matgl's `model.pt` pickles a Normalizer object and is not shipped.
"""


def bundle_dataset(name: str, shared: Path, out: Path) -> None:
    frames = ase.io.read(shared / "data" / f"{name}.extxyz", ":")
    kept, dropped = [], []
    for atoms in frames:
        sid = str(atoms.info["id"])
        try:
            validate_atoms(atoms, sid, cutoff=4.0)
            check_label(atoms.info.get("ltc"), sid)
        except InvalidStructureError as err:
            dropped.append(err)
            continue
        kept.append(atoms)
    buffer = io.StringIO()
    ase.io.write(buffer, kept, format="extxyz")
    with gzip.GzipFile(out / f"{name}.extxyz.gz", "wb", mtime=0) as handle:
        handle.write(buffer.getvalue().encode())

    kappa = np.array([a.info["ltc"] for a in kept])
    meta = SOURCES[name]
    n_el = sorted({s for a in kept for s in a.get_chemical_symbols()})
    lines = [
        f"# {meta['title']}",
        "",
        f"- **Size**: {len(kept)} structures ({len(frames)} in the original file), {len(n_el)} elements, "
        f"{min(len(a) for a in kept)}-{max(len(a) for a in kept)} atoms per cell.",
        f"- **Target**: lattice thermal conductivity κ_L at 300 K, W m⁻¹ K⁻¹ (`atoms.info['ltc']`): "
        f"min {kappa.min():.3g}, median {np.median(kappa):.3g}, max {kappa.max():.4g}.",
        f"- **What**: {meta['what']}",
        f"- **Label method**: {meta['label']}",
        f"- **Structures**: {meta['structures']}",
        f"- **Licence / citation**: {meta['licence']}",
    ]
    if dropped:
        lines.append(f"- **Left out** ({len(dropped)}): " + "; ".join(str(e) for e in dropped))
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    print(f"{name}: kept {len(kept)} of {len(frames)}; dropped {[e.structure_id for e in dropped]}")


def bundle_model(name: str, shared: Path, out: Path) -> None:
    src = shared / "models" / name
    dst = out / name
    dst.mkdir(parents=True, exist_ok=True)
    state = torch.load(src / "state.pt", map_location="cpu", weights_only=True)
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise TypeError(f"{src / 'state.pt'} is not a plain tensor state dict")
    torch.save(dict(state), dst / "state.pt")
    shutil.copyfile(src / "model.json", dst / "model.json")
    shutil.copyfile(src / "README.md", dst / "README.md")
    (dst / "NOTICE").write_text(MATGL_NOTICE)
    print(f"{name}: {len(state)} tensors")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--shared", default=os.environ.get("MATGL_LTC_SHARED"), help="folder with data/ and models/"
    )
    args = parser.parse_args()
    if not args.shared:
        parser.error("give --shared or set MATGL_LTC_SHARED")
    shared = Path(args.shared)
    data_out = PACKAGE / "data" / "bundled"
    data_out.mkdir(parents=True, exist_ok=True)
    for name in SOURCES:
        bundle_dataset(name, shared, data_out)
    weights_out = PACKAGE / "model" / "weights"
    for name in MODELS:
        bundle_model(name, shared, weights_out)
    (weights_out / "manifest.json").write_text(json.dumps(list(MODELS), indent=1))


if __name__ == "__main__":
    main()
