"""LTCEnsemble, load_model and the ASE calculator contract, on a real (tiny) 3-split run."""

from __future__ import annotations

import json

import ase.io
import numpy as np
import pytest
import torch
from ase.build import bulk

from matgl_ltc import LTCCalculator, LTCEnsemble, LTCModel, ModelLoadError, load_model
from matgl_ltc.analysis.calibration import calibrate, fit_sigma_scale, uncertainty_report
from matgl_ltc.model import point_estimate
from matgl_ltc.train import Recipe, Stage
from matgl_ltc.train.runner import RecipeRunner


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    recipe = Recipe(
        "tiny", (Stage("target", init="backbone:megnet-eform", epochs=2, batch_size=32, head_hidden=(16,)),)
    )
    RecipeRunner(progress=False).run(recipe, "togo15", out, n_splits=3)
    return out


@pytest.fixture(scope="module")
def ensemble(run_dir) -> LTCEnsemble:
    return LTCEnsemble.from_run(run_dir, sigma_scale=1.5)


def test_mean_and_var_are_those_of_the_members(ensemble, togo15):
    pred = ensemble.predict(togo15.atoms[:10], batch_size=4)
    single = np.stack([m.predict(togo15.atoms[:10]) for m in ensemble.members], axis=1)
    np.testing.assert_allclose(pred.members, single, rtol=1e-5)
    np.testing.assert_allclose(pred.mean, single.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(pred.var, single.var(axis=1), rtol=1e-5)
    np.testing.assert_allclose(pred.std, 1.5 * np.sqrt(pred.var), rtol=1e-6)
    assert pred.members.shape == (10, 3) and pred.ids == togo15.ids[:10]
    assert np.all(pred.var > 0)  # members trained on different splits disagree


def test_point_estimates_of_real_members(ensemble, togo15):
    pred = ensemble.predict(togo15.atoms[:12])
    logs = np.log(pred.members)
    np.testing.assert_allclose(pred.geometric_mean, np.exp(logs.mean(axis=1)), rtol=1e-9)
    np.testing.assert_allclose(
        pred.estimate("min_mape"), pred.geometric_mean * np.exp(-logs.var(axis=1, ddof=1))
    )
    # mean ≥ geometric (AM-GM) ≥ min_mape, strictly where members disagree
    assert np.all(pred.mean > pred.geometric_mean) and np.all(pred.geometric_mean > pred.min_mape)
    one = LTCEnsemble(ensemble.members[:1]).predict(togo15.atoms[:12])
    np.testing.assert_allclose(one.min_mape, one.mean, rtol=1e-9)  # one member: nothing to lean on
    with pytest.raises(ValueError, match="unknown estimate 'median'"):
        pred.estimate("median")


@pytest.mark.parametrize("estimate", ["mean", "min_mape"])
def test_cli_predict_prints_the_chosen_estimate(run_dir, ensemble, capsys, estimate):
    from importlib import resources

    import ase.io

    from matgl_ltc.cli import main

    cif = str(resources.files("matgl_ltc") / "examples" / "PbTe.cif")
    assert main(["predict", cif, "--model", str(run_dir), "--estimate", estimate]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("PbTe"))
    expected = ensemble.predict([ase.io.read(cif)]).estimate(estimate)[0]
    assert float(row.split()[2]) == pytest.approx(expected, rel=1e-3)


def test_cli_predict_batches_a_file_and_reports_bad_entries_without_stopping(
    tmp_path, run_dir, ensemble, togo15, isolated_atom, capsys
):
    import ase.io

    from matgl_ltc.cli import main

    good = [atoms.copy() for atoms in togo15.atoms[:6]]
    path = tmp_path / "mine.extxyz"
    ase.io.write(path, [*good[:3], isolated_atom, *good[3:]])
    missing = tmp_path / "nowhere.cif"
    assert main(["predict", str(path), str(missing), "--model", str(run_dir), "--estimate", "mean"]) == 1
    captured = capsys.readouterr()
    rows = {line.split()[0]: line.split() for line in captured.out.splitlines()[2:]}
    assert list(rows) == togo15.ids[:6]  # in file order, the bad one left out
    expected = ensemble.predict(good).mean
    np.testing.assert_allclose([float(rows[i][2]) for i in togo15.ids[:6]], expected, rtol=1e-3)
    assert "lonely-Cu" in captured.err and "no-edges" in captured.err
    assert str(missing) in captured.err and "unreadable" in captured.err


def test_min_mape_estimate_minimises_percentage_error_under_lognormal_spread():
    rng = np.random.default_rng(1)
    for mu, s in [(1.0, 0.3), (3.0, 0.6), (-0.5, 0.9)]:
        members = np.exp(rng.normal(mu, s, size=(1, 40000)))
        estimate = point_estimate(members, "min_mape")[0]
        candidates = np.exp(mu + np.linspace(-2 * s, s, 301))
        mape = np.abs(candidates[:, None] - members) / members
        best = candidates[np.argmin(mape.mean(axis=1))]
        assert estimate == pytest.approx(best, rel=0.03)
        assert estimate == pytest.approx(np.exp(mu - s**2), rel=0.03)
        assert point_estimate(members, "geometric")[0] == pytest.approx(np.exp(mu), rel=0.02)


def test_load_model_by_path_run_and_ensemble_dir(tmp_path, run_dir, ensemble, togo15):
    assert isinstance(load_model(run_dir), LTCEnsemble)
    single = load_model(run_dir / "split_0" / "target" / "model")
    assert isinstance(single, LTCModel)
    ensemble.save(tmp_path / "ens")
    again = load_model(tmp_path / "ens")
    assert isinstance(again, LTCEnsemble) and again.sigma_scale == 1.5
    np.testing.assert_allclose(again.predict(togo15.atoms[:5]).mean, ensemble.predict(togo15.atoms[:5]).mean)
    (tmp_path / "ens" / "ensemble.json").write_text("{")
    with pytest.raises(ModelLoadError, match="corrupted"):
        load_model(tmp_path / "ens")
    with pytest.raises(ModelLoadError, match="neither a known model"):
        load_model("no-such-model")
    with pytest.raises(ModelLoadError, match="holds no LTC model"):
        load_model(tmp_path)


def test_out_of_domain_flags(ensemble, togo15):
    seen = ensemble.train_elements
    assert seen and "Si" in seen
    osmium = bulk("Os", "hcp", a=2.73, c=4.32)  # Os is not in Togo15
    pred = ensemble.predict([togo15.atoms[0], osmium])
    assert pred.out_of_domain.tolist() == [False, True] and pred.unseen_elements[1] == ["Os"]


def test_calculator_contract(ensemble):
    calc = LTCCalculator(ensemble)
    assert {"ltc", "ltc_std", "ltc_var", "ltc_members"} <= set(calc.implemented_properties)
    atoms = bulk("Si", "diamond", a=5.43)
    atoms.calc = calc
    kappa = calc.get_property("ltc", atoms)
    members = calc.get_property("ltc_members", atoms)
    assert kappa == pytest.approx(np.mean(members)) and len(members) == 3
    assert calc.get_property("ltc_var", atoms) == pytest.approx(np.var(members))
    logs = np.log(members)
    assert calc.get_property("ltc_geometric", atoms) == pytest.approx(np.exp(logs.mean()))
    assert calc.get_property("ltc_min_mape", atoms) == pytest.approx(np.exp(logs.mean() - logs.var(ddof=1)))
    assert calc.get_ltc_std(atoms) == pytest.approx(1.5 * np.std(members), rel=1e-6)
    # cached: the same Atoms does not recompute
    calc.results["ltc"] = -1.0
    assert calc.get_property("ltc", atoms) == -1.0
    # a change of positions invalidates
    atoms.positions[1] += [0.05, 0.0, 0.0]
    assert calc.get_property("ltc", atoms) != -1.0
    before = calc.get_property("ltc", atoms)
    # a change of cell invalidates
    atoms.set_cell(atoms.cell * 1.03, scale_atoms=True)
    assert calc.get_property("ltc", atoms) != pytest.approx(before, rel=1e-9)


def test_calculator_from_a_single_model(run_dir):
    calc = LTCCalculator(str(run_dir / "split_1" / "target" / "model"))
    atoms = bulk("NaCl", "rocksalt", a=5.64)
    assert calc.get_property("ltc_std", atoms) == 0.0 and calc.get_ltc(atoms) > 0


def test_calibration_on_held_out_residuals(ensemble, run_dir, togo15):
    splits = json.loads((run_dir / "splits.json").read_text())
    members = ensemble.predict_graphs(togo15.graph_cache(4.0).graphs)
    masks = np.zeros_like(members, dtype=bool)
    for k, split in enumerate(splits):
        masks[togo15.indices(split["validation"]), k] = True
    report = calibrate(members, togo15.labels, masks)
    assert report["raw"]["n"] == sum(len(s["validation"]) for s in splits)
    # after recalibration the held-out z-scores have unit mean square
    assert report["calibrated"]["nll"] <= report["raw"]["nll"] + 1e-9


def test_uncertainty_report_against_known_cases():
    rng = np.random.default_rng(0)
    sigma = rng.uniform(0.1, 1.0, 20000)
    residual = rng.normal(0, sigma)
    report = uncertainty_report(residual, sigma)
    assert report["coverage_1sigma"] == pytest.approx(0.6827, abs=0.01)
    assert report["coverage_2sigma"] == pytest.approx(0.9545, abs=0.01)
    assert report["spearman_std_abs_error"] > 0.3
    assert fit_sigma_scale(residual, sigma / 2) == pytest.approx(2.0, rel=0.02)


def test_shipped_ensembles_load_by_name_and_default(shared_dir):
    from matgl_ltc import list_models

    shipped = list_models()
    assert {"LTC-MEGNet-Togo15-hybrid", "LTC-MEGNet-Togo15-2stage", "LTC-MEGNet-MIX-2stage"} <= set(shipped)
    default = load_model()
    assert isinstance(default, LTCEnsemble) and len(default) == 9
    assert default.metadata["name"] == "LTC-MEGNet-Togo15-hybrid" and default.sigma_scale > 0
    # its members blend, in log space, with multi-fidelity descriptor boosters (one per split)
    assert default.default_estimate == "geometric"
    assert len(default.boosters) == 9 and all(b.multi_fidelity for b in default.boosters)
    assert default.boosting_weight == 0.4
    assert all(m.uses_descriptors and torch.isfinite(m.descriptor_max).all() for m in default.members)
    # a crystal is predicted the same from its primitive, conventional or super cell, and large
    # cells stay positive (the head's descriptors are clipped to Togo15's range)
    nacl = bulk("NaCl", "rocksalt", a=5.64)
    cells = [nacl, bulk("NaCl", "rocksalt", a=5.64, cubic=True), nacl.repeat(4)]
    predictions = default.predict(cells)
    np.testing.assert_allclose(predictions.members, predictions.members[[0, 0, 0]], rtol=1e-4)
    np.testing.assert_allclose(predictions.geometric_mean, predictions.geometric_mean[0], rtol=1e-4)
    assert (predictions.members > 0).all()
    large = [a for a in ase.io.read(shared_dir / "data" / "mp_stable_scan.extxyz", ":200") if len(a) > 40][:5]
    assert len(large) == 5 and (default.predict(large).members > 0).all()
    # what the clip hides is said: NaCl's cells are inside Togo15's range, an element crystal is
    # outside it (Togo15 holds binaries only), farthest first, and large MP cells hold more atoms
    assert predictions.extrapolated == [[], [], []]
    silicon = default.predict([bulk("Si", "diamond", a=5.431)]).extrapolated[0]
    assert silicon[0] == "n_species" and "std_X" in silicon and "n_atoms" not in silicon
    assert all("n_atoms" in names for names in default.predict(large).extrapolated)
    assert not load_model("LTC-MEGNet-Togo15-2stage").uses_descriptors  # the paper's recipe, kept
    mix = load_model("LTC-MEGNet-MIX-2stage")
    assert "Sc" in mix.train_elements  # half-Heusler elements are in-domain for MIX
    atoms = bulk("PbTe", "rocksalt", a=6.462)
    atoms.calc = LTCCalculator()
    kappa = atoms.calc.get_property("ltc", atoms)
    assert 0.3 < kappa < 30  # PbTe is a low-κ material (about 2 W/m/K)
    assert atoms.calc.get_property("ltc_extrapolated", atoms) == ["mass_density"]  # the densest
    assert (
        bulk("Si", "diamond", a=5.431) and LTCCalculator().get_ltc(bulk("Si", "diamond", a=5.431)) > 5 * kappa
    )
