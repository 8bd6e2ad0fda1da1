"""Training a tiny model end to end, from Python and from the command line."""

from __future__ import annotations

import csv
import inspect
import json
import warnings

import ase.io
import lightning as pl
import numpy as np
import pytest
import torch

from matgl_ltc import LTCEnsemble, LTCModel, load_dataset
from matgl_ltc.cli import main
from matgl_ltc.data import random_splits
from matgl_ltc.data.transform import LogStandardScaler
from matgl_ltc.train import TrainingDivergedError, fit
from matgl_ltc.train.fit import check_trained
from matgl_ltc.train.lightning_module import LTCLightningModule

METRICS = {"mape", "median_ape", "mae", "rmse", "r2", "log10_mae", "log10_rmse", "spearman"}


def test_fit_saves_metrics_curve_and_best_model(tmp_path, togo15):
    model = LTCModel.from_backbone("megnet-eform", head_hidden=(32, 16), seed=0)
    split = random_splits(togo15.ids, n_splits=2)[1]
    result = fit(model, togo15, split, epochs=4, batch_size=16, progress=False, out_dir=tmp_path)
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert set(m["validation"]) == METRICS and m["split"] == {
        "index": 1,
        "seed": 1,
        "n_train": 76,
        "n_validation": 19,
    }
    assert 0 <= m["best_epoch"] < 4 and m["settings"]["lr"] == 1e-3
    with open(tmp_path / "curve.csv") as handle:
        curve = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in curve] == [0, 1, 2, 3]
    best = min(curve, key=lambda r: float(r["val_mape"]))
    assert int(best["epoch"]) == m["best_epoch"]
    assert m["validation"]["mape"] == pytest.approx(float(best["val_mape"]), rel=1e-4)
    # the transform is fitted on the training split only
    train_y = np.log10(togo15.labels[togo15.indices(split.train)] + 1)
    assert result.model.transform.mean == pytest.approx(train_y.mean(), rel=1e-6)
    # reload gives the saved validation predictions
    loaded = LTCModel.load(tmp_path / "model")
    with open(tmp_path / "validation_predictions.csv") as handle:
        rows = list(csv.DictReader(handle))
    pred = loaded.predict(togo15.atoms[i] for i in togo15.indices([r["id"] for r in rows]))
    np.testing.assert_allclose(pred, [float(r["ltc_pred"]) for r in rows], rtol=1e-4)
    # the final epoch's predictions (the unbiased protocol) score what the curve's last row says
    final_pred = np.array([float(r["ltc_pred_final"]) for r in rows])
    true = np.array([float(r["ltc_true"]) for r in rows])
    assert np.mean(np.abs(final_pred - true) / true) == pytest.approx(float(curve[-1]["val_mape"]), rel=1e-3)
    # every epoch's validation predictions: the kept epoch's row is the kept model's, the last the final's
    epochs = np.load(tmp_path / "validation_epochs.npz", allow_pickle=False)
    assert list(epochs["ids"]) == [r["id"] for r in rows] and list(epochs["epoch"]) == [0, 1, 2, 3]
    assert epochs["ltc_pred"].shape == (4, 19)
    np.testing.assert_allclose(epochs["ltc_pred"][m["best_epoch"]], pred, rtol=1e-4)
    np.testing.assert_allclose(epochs["ltc_pred"][-1], final_pred, rtol=1e-4)
    assert (
        loaded.metadata["split"]["index"] == 1
        and loaded.metadata["metrics"]["mape"] == m["validation"]["mape"]
    )


def test_training_lowers_the_loss(togo15):
    model = LTCModel.from_backbone("megnet-eform", head_hidden=(32, 16), seed=0)
    centers = model.backbone.bond_expansion.rbf.centers.detach().clone()
    result = fit(model, togo15, 0, epochs=6, batch_size=8, progress=False)
    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < losses[0]
    # matgl keeps its Gaussian RBF centers fixed; training (twice, as a recipe chains) must too, so
    # every fine-tuned member expands bonds identically and an ensemble expands them once
    again = fit(
        result.model, togo15, 1, epochs=2, batch_size=8, progress=False, freeze=("backbone.embedding",)
    )
    rbf = again.model.backbone.bond_expansion.rbf.centers
    assert torch.equal(rbf.detach(), centers) and not rbf.requires_grad
    fresh = LTCModel.from_backbone("megnet-eform", head_hidden=(32, 16), seed=1)
    assert LTCEnsemble([fresh, again.model]).shared_bond_expansion
    # frozen for one stage only: the returned model is trainable again where it was before
    assert all(
        p.requires_grad for n, p in again.model.named_parameters() if n.startswith("backbone.embedding")
    )


def test_the_progress_bar_ends_on_the_last_epochs_own_metrics(togo15, capsys):
    # Lightning runs callbacks' on_train_epoch_end before the module's, where the epoch's row is
    # written: a bar reading it there would show every epoch the one before's metrics
    model = LTCModel.from_backbone("megnet-eform", head_hidden=(32, 16), seed=0)
    result = fit(model, togo15, 0, epochs=3, batch_size=16, progress=True)
    last_render = capsys.readouterr().err.split("\r")[-1]
    last = result.history[-1]
    assert "3/3" in last_render
    assert f"val_mape={last['val_mape']:.3f}" in last_render
    assert f"val_log10_mae={last['val_log10_mae']:.3f}" in last_render
    assert f"loss={last['train_loss']:.3f}" in last_render
    assert f"best={result.metrics['best_epoch']}" in last_render


def test_a_diverged_training_fails_by_name_instead_of_saving_a_nan_model(tmp_path, togo15):
    model = LTCModel.from_backbone("megnet-eform", head_hidden=(32, 16), seed=0)
    with pytest.raises(TrainingDivergedError, match=r"togo15 split 0: training diverged.*lr=10"):
        fit(model, togo15, 0, epochs=2, batch_size=16, lr=10.0, progress=False, out_dir=tmp_path / "run")
    assert not (tmp_path / "run" / "model").exists()


def test_a_collapsed_head_is_reported():
    history = [{"epoch": 0, "train_loss": 1.6}]
    with pytest.warns(RuntimeWarning, match="head collapsed"):
        check_trained("aflow split 2", history, np.full(5, -0.99), np.full(5, -0.99), 2e-3)
    with pytest.warns(RuntimeWarning, match="after the kept epoch.*from epoch 1"):
        check_trained(
            "x",
            [*history, {"epoch": 1, "train_loss": float("nan")}],
            np.arange(1.0, 4),
            np.full(3, np.nan),
            1,
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a sound model: no warning, no error
        check_trained("fine", history, np.arange(1.0, 4), np.arange(1.0, 4), 1e-3)


def test_the_mape_loss_keeps_a_gradient_where_predictions_are_far_below_zero(togo15):
    model = LTCModel.from_backbone("megnet-eform", head_hidden=(16,), seed=0)
    model.transform = LogStandardScaler.fit(togo15.labels)
    module = LTCLightningModule(model)
    z = torch.linspace(-40.0, 5.0, 4001, dtype=torch.float64, requires_grad=True)
    seen = module.kappa_for_loss(z)
    exact = model.to_kappa(z)
    above = exact.detach() >= -0.9
    # untouched wherever κ̂ ≥ -0.9 W/m/K (every label is > 0), continuous below
    assert torch.equal(seen[above], exact[above]) and above.any() and (~above).any()
    assert np.all(np.diff(seen.detach().numpy()) > 0)
    # deep below, the plain inverse is flat (the trap); the loss still pulls the head up
    kappa = torch.full_like(z, 2.0)
    (g_seen,) = torch.autograd.grad(torch.sum(torch.abs(seen - kappa) / kappa), z)
    (g_exact,) = torch.autograd.grad(torch.sum(torch.abs(exact - kappa) / kappa), z)
    assert g_seen[0] < 0 and abs(g_exact[0]) < 1e-12 * abs(g_seen[0])
    assert torch.allclose(g_seen[~above], g_seen[0])


def test_a_fresh_head_climbs_out_of_negative_predictions_at_batch_8(togo15):
    # the single-split CLI's (and the paper's) batch size: here the first epoch's MAPE pull towards
    # small κ overshoots below every label (validation log10-MAE ≈ 7 after epoch 0); with the plain
    # inverse the head stayed at κ̂ ≈ -1 W/m/K for good (59 of 95 predictions ≤ 0 after 20 epochs, 49 after 30)
    model = LTCModel.from_backbone("megnet-eform", seed=42)
    result = fit(model, togo15, 0, epochs=30, batch_size=8, seed=42, keep="last", progress=False)
    assert np.all(result.model.predict(togo15.atoms) > 0)
    assert result.metrics["validation"]["log10_mae"] < 0.4


def test_predictions_below_zero_are_reported():
    history = [{"epoch": 0, "train_loss": 0.9}]
    with pytest.warns(RuntimeWarning, match=r"2 of 3 validation structures get κ ≤ 0 W/m/K"):
        check_trained("togo15 split 0", history, np.array([-0.5, 0.0, 3.0]), np.ones(3), 1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one stray structure of many (AGL has labels near 0) is fine
        check_trained("aflow split 1", history, np.r_[-0.01, np.ones(879)], np.ones(880), 2e-3)


def test_keep_last_keeps_the_final_epoch(togo15):
    model = LTCModel.from_backbone("megnet-random", head_hidden=(16,), seed=0)
    result = fit(model, togo15, 0, epochs=3, batch_size=32, keep="last", progress=False)
    assert result.metrics["best_epoch"] == 2
    assert result.metrics["validation"]["mape"] == pytest.approx(
        result.metrics["final_validation"]["mape"], rel=1e-4
    )


class _EpochStates(pl.Callback):
    def __init__(self) -> None:
        self.states: list[dict[str, torch.Tensor]] = []

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.states.append({k: v.detach().clone() for k, v in pl_module.model.state_dict().items()})


def test_snapshot_averaging_keeps_the_mean_of_the_last_epochs(togo15):
    model = LTCModel.from_backbone("megnet-eform", head_hidden=(16,), seed=0)
    seen = _EpochStates()
    result = fit(
        model,
        togo15,
        0,
        epochs=4,
        batch_size=32,
        keep="last",
        average_last=3,
        callbacks=[seen],
        progress=False,
    )
    key = "head.layers.0.weight"
    expected = torch.stack([s[key] for s in seen.states[-3:]]).mean(dim=0)
    torch.testing.assert_close(result.model.state_dict()[key], expected, rtol=1e-5, atol=1e-7)
    assert not torch.equal(expected, seen.states[-1][key])
    # the unbiased score is the averaged model's, and it is the kept model's
    assert result.metrics["final_validation"]["mape"] == pytest.approx(result.metrics["validation"]["mape"])


def test_frozen_parameters_do_not_move(togo15):
    model = LTCModel.from_backbone("megnet-eform", head_hidden=(16,), seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    frozen = ("backbone.embedding", "backbone.blocks.0")
    result = fit(model, togo15, 0, epochs=2, batch_size=32, keep="last", freeze=frozen, progress=False)
    after = result.model.state_dict()
    for key in before:
        moved = not torch.equal(before[key], after[key])
        if key.startswith(frozen):
            assert not moved, key
    assert not torch.equal(before["head.layers.0.weight"], after["head.layers.0.weight"])
    # afterwards every parameter is as trainable as before: frozen ones again, matgl's RBF centers never
    fresh = LTCModel.from_backbone("megnet-eform", head_hidden=(16,), seed=0)
    expected = {n: p.requires_grad for n, p in fresh.named_parameters()}
    assert {n: p.requires_grad for n, p in result.model.named_parameters()} == expected
    assert not expected["backbone.bond_expansion.rbf.centers"]
    with pytest.raises(ValueError, match="matches no parameter"):
        fit(model, togo15, 0, epochs=1, freeze=("backbone.nothing",), progress=False)


def test_l2_sp_holds_the_weights_near_where_the_stage_started(togo15):
    def distance_moved(l2_sp: float) -> float:
        model = LTCModel.from_backbone("megnet-eform", head_hidden=(16,), seed=0)
        start = {n: p.detach().clone() for n, p in model.named_parameters()}
        fit(model, togo15, 0, epochs=3, batch_size=16, lr=5e-3, keep="last", l2_sp=l2_sp, progress=False)
        return sum(float(torch.sum((p.detach() - start[n]) ** 2)) for n, p in model.named_parameters())

    free, anchored = distance_moved(0.0), distance_moved(50.0)
    assert 0 < anchored < 0.5 * free
    with pytest.raises(ValueError, match="l2_sp must be non-negative"):
        LTCLightningModule(LTCModel.from_backbone("megnet-eform", head_hidden=(16,)), l2_sp=-1.0)


def test_cli_train_with_split_file(tmp_path, togo15, capsys):
    split_file = tmp_path / "split.json"
    split_file.write_text(json.dumps({"train": togo15.ids[19:], "validation": togo15.ids[:19]}))
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--dataset",
            "togo15",
            "--backbone",
            "megnet-eform",
            "--split-file",
            str(split_file),
            "--epochs",
            "2",
            "--batch-size",
            "32",
            "--head-hidden",
            "16",
            "--out",
            str(out),
            "--no-progress",
            "--descriptors",
            "--monitor",
            "log10_mae",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "MAPE" in printed and "MAE of log10" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"]["n_validation"] == 19
    with open(out / "curve.csv") as f:
        curve = [float(row["val_log10_mae"]) for row in csv.DictReader(f)]
    assert metrics["monitor"] == "log10_mae" and metrics["best_epoch"] == int(np.argmin(curve))
    loaded = LTCModel.load(out / "model")
    assert loaded.head_hidden == [16] and loaded.uses_descriptors


def test_cli_train_leaves_unset_options_at_fits_own_defaults(tmp_path):
    out = tmp_path / "run"
    argv = ["train", "--dataset", "togo15", "--epochs", "1", "--head-hidden", "16", "--out", str(out)]
    assert main([*argv, "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    defaults = {k: p.default for k, p in inspect.signature(fit).parameters.items()}
    for name in ("batch_size", "lr", "min_lr_fraction", "loss", "seed", "descriptors"):
        assert metrics["settings"][name] == defaults[name], name
    assert (metrics["keep"], metrics["monitor"]) == (defaults["keep"], defaults["monitor"])
    assert metrics["split"]["index"] == 0


def test_cli_reports_bad_dataset(capsys):
    assert main(["train", "--dataset", "no-such-set", "--epochs", "1", "--no-progress"]) == 2
    assert "no-such-set" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:the models were trained on togo15")
def test_cli_reads_another_label_key_and_skips_bad_structures_on_request(tmp_path, togo15, capsys):
    structures = [atoms.copy() for atoms in togo15.atoms[:12]]
    for atoms in structures:
        atoms.info["kappa"] = atoms.info.pop("ltc")
    structures[4].info["kappa"] = -3.0
    path = tmp_path / "mine.extxyz"
    ase.io.write(path, structures)
    argv = ["evaluate", "LTC-MEGNet-Togo15-hybrid", "--dataset", str(path), "--out", str(tmp_path / "e.json")]
    assert main(argv) == 2
    assert "info has no 'ltc' (it has formula, kappa" in capsys.readouterr().err
    assert main([*argv, "--label-key", "kappa"]) == 2  # the negative label stops it ...
    err = capsys.readouterr().err
    assert togo15.ids[4] in err and "not positive" in err and "--skip-invalid" in err
    with pytest.warns(UserWarning, match=f"(?s)skipped 1 invalid structure.*{togo15.ids[4]}"):
        assert main([*argv, "--label-key", "kappa", "--skip-invalid"]) == 0  # ... unless asked
    assert json.loads((tmp_path / "e.json").read_text())["n_structures"] == 11


def test_fidelity_aware_training_mixes_the_replay_set_and_predicts_at_the_target_fidelity(tmp_path, togo15):
    hh143 = load_dataset("hh143")
    model = LTCModel.from_backbone("megnet-eform", head_hidden=(16,), seed=0)
    result = fit(
        model, togo15, 0, epochs=2, batch_size=32, fidelity=1, replay=hh143, replay_size=20,
        keep="last", out_dir=tmp_path / "fit", progress=False,
    )  # fmt: skip
    settings = result.metrics["settings"]
    assert settings["fidelity"] == 1 and settings["replay"] == "hh143" and settings["replay_size"] == 20
    reloaded = LTCModel.load(tmp_path / "fit" / "model")
    assert reloaded.state_index == 1
    graphs = togo15.graph_cache(4.0).graphs[:4]
    at_target = reloaded.predict_graphs(graphs)
    np.testing.assert_allclose(at_target, result.model.predict_graphs(graphs), rtol=1e-5)
    reloaded.state_index = 0  # the state input matters: the other fidelity predicts differently
    assert not np.allclose(reloaded.predict_graphs(graphs), at_target)
