"""LTCCalculator: κ_L with its uncertainty through ASE's calculator interface."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from .model.ensemble import LTCEnsemble
from .model.ltc_model import LTCModel


class LTCCalculator(Calculator):
    """An ASE calculator for lattice thermal conductivity at 300 K.

    Properties (W m⁻¹ K⁻¹):

    - ``ltc``: ensemble mean κ_L (the paper's mTC);
    - ``ltc_geometric``: the members' geometric mean; ``ltc_min_mape``: the estimate with the
      least expected percentage error, lower where the members disagree
      (:func:`matgl_ltc.model.point_estimate`);
    - ``ltc_std``: calibrated standard deviation over members; ``ltc_std_raw`` the raw one;
    - ``ltc_var``: variance over members (var pTC);
    - ``ltc_members``: one prediction per member (array of length k);
    - ``ltc_out_of_domain``: True if an element was never seen in fine-tuning.
    - ``ltc_extrapolated``: the descriptors outside the hybrid members' training range.

    Results are cached like any ASE calculator's and recomputed when positions, numbers
    or the cell change.

    Parameters
    ----------
    model
        An ``LTCEnsemble``, an ``LTCModel`` (a one-member ensemble, std 0), a name or a path
        for :func:`matgl_ltc.load_model`, or ``None`` for the default shipped ensemble.
    """

    implemented_properties: ClassVar[list[str]] = [
        "ltc",
        "ltc_geometric",
        "ltc_min_mape",
        "ltc_std",
        "ltc_std_raw",
        "ltc_var",
        "ltc_members",
        "ltc_out_of_domain",
        "ltc_extrapolated",
    ]

    def __init__(self, model: LTCEnsemble | LTCModel | str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(model, (LTCEnsemble, LTCModel)):
            from .model.loading import load_model

            model = load_model(model)
        self.ensemble = model if isinstance(model, LTCEnsemble) else LTCEnsemble([model])

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: list[str] | None = None,
        system_changes: list[str] = all_changes,
    ) -> None:
        super().calculate(atoms, properties, system_changes)
        prediction = self.ensemble.predict([self.atoms])
        self.results = {
            "ltc": float(prediction.mean[0]),
            "ltc_geometric": float(prediction.geometric_mean[0]),
            "ltc_min_mape": float(prediction.min_mape[0]),
            "ltc_std": float(prediction.std[0]),
            "ltc_std_raw": float(prediction.std_raw[0]),
            "ltc_var": float(prediction.var[0]),
            "ltc_members": np.asarray(prediction.members[0]),
            "ltc_out_of_domain": bool(prediction.out_of_domain[0]),
            "ltc_extrapolated": list(prediction.extrapolated[0]) if prediction.extrapolated else [],
        }

    def get_ltc(self, atoms: Atoms | None = None) -> float:
        """Ensemble-mean κ_L, like ``get_potential_energy`` for energies."""
        return float(self.get_property("ltc", atoms))

    def get_ltc_std(self, atoms: Atoms | None = None) -> float:
        """Calibrated standard deviation of κ_L over the ensemble."""
        return float(self.get_property("ltc_std", atoms))
