"""Recipes as data, stage chaining, resume, and reuse of shared stages; tiny settings throughout."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

from matgl_ltc import LTCModel, load_model
from matgl_ltc.analysis.metrics import regression_metrics
from matgl_ltc.analysis.screening_report import read_scan
from matgl_ltc.cli import main
from matgl_ltc.data import random_splits
from matgl_ltc.data.descriptors import descriptor_matrix
from matgl_ltc.model import point_estimate
from matgl_ltc.model.boosting import DescriptorBoosting
from matgl_ltc.screening import scan
from matgl_ltc.train import Recipe, Stage, builtin_recipes, resolve_recipe
from matgl_ltc.train.recipes import stage_fingerprint
from matgl_ltc.train.runner import RecipeRunner, run_models

TINY = {"epochs": 1, "batch_size": 64, "head_hidden": (8,)}


def tiny_two_stage(name: str = "tiny-two-stage") -> Recipe:
    """Eform → first 200 AFLOW structures (as a file) → target, two AFLOW models."""
    return Recipe(
        name,
        (
            Stage("aflow", "AFLOW_SUBSET", "backbone:megnet-eform", n_splits=2, **TINY),
            Stage("target", init="stage:aflow", **TINY),
        ),
    )


@pytest.fixture(scope="module")
def aflow_subset(tmp_path_factory):
    import ase.io

    from matgl_ltc.data import load_dataset

    path = tmp_path_factory.mktemp("aflow") / "aflow_small.extxyz"
    ase.io.write(path, load_dataset("aflow_agl").atoms[:200])
    return str(path)


def with_dataset(recipe: Recipe, path: str) -> Recipe:
    from dataclasses import replace

    return replace(
        recipe,
        stages=tuple(replace(s, dataset=path) if s.dataset == "AFLOW_SUBSET" else s for s in recipe.stages),
    )


def test_builtin_recipes_follow_the_paper():
    recipes = {r.name: r for r in builtin_recipes()}
    assert [s.init for s in recipes["scratch"].stages] == ["backbone:megnet-random"]
    assert [s.init for s in recipes["pretrained"].stages] == ["backbone:megnet-eform"]
    assert [(s.dataset, s.init) for s in recipes["two-stage"].stages] == [
        ("aflow_agl", "backbone:megnet-eform"),
        ("target", "stage:aflow"),
    ]
    assert recipes["aflow-only"].stages[0].init == "backbone:megnet-random"
    # the hybrid recipe is two-stage with descriptors in the target stage: it shares the AFLOW models
    hybrid, plain = recipes["two-stage-hybrid"], recipes["two-stage"]
    assert [s.descriptors for s in hybrid.stages] == [False, True]
    assert stage_fingerprint(hybrid, hybrid.stages[0]) == stage_fingerprint(plain, plain.stages[0])
    # the member recipes train the hybrid's stages; they differ only in what their members start from
    for name, (reseed, rotate) in {
        "two-stage-hybrid-3seeds": ("last", False),
        "two-stage-hybrid-3rotated": ("last", True),
        "two-stage-hybrid-3rotated-boosted": ("last", True),
        "two-stage-hybrid-3rotated-agl-boosted": ("last", True),
        "two-stage-hybrid-3chains": ("all", False),
    }.items():
        members = recipes[name]
        assert members.stages == hybrid.stages and (members.members, members.estimate) == (3, "min_mape")
        assert (members.reseed, members.rotate) == (reseed, rotate)
        booster = {"3rotated-boosted": (0.25, ""), "3rotated-agl-boosted": (0.4, "aflow_agl")}
        assert (members.boosting_weight, members.boosting_low_fidelity) == booster.get(
            name.removeprefix("two-stage-hybrid-"), (0.0, "")
        )
        assert Recipe.from_dict(members.to_dict()) == members  # what recipe.json and files hold
    # one model per split with the multi-fidelity booster: the hybrid's stages, nothing else added
    boosted = recipes["two-stage-hybrid-agl-boosted"]
    assert boosted.stages == hybrid.stages and (boosted.members, boosted.rotate) == (1, False)
    assert (boosted.boosting_weight, boosted.boosting_low_fidelity) == (0.4, "aflow_agl") and boosted.combined
    assert Recipe.from_dict(boosted.to_dict()) == boosted
    # fine-tuning the shipped default: its members, its kind of trees, no AFLOW stage
    finetune = recipes["finetune-shipped"]
    assert [s.init for s in finetune.stages] == ["model:LTC-MEGNet-Togo15-hybrid"]
    assert (finetune.boosting_weight, finetune.boosting_low_fidelity) == (0.4, "aflow_agl")
    replaying = recipes["finetune-shipped-replay"]
    assert replaying.stages == tuple(dataclasses.replace(s, replay="start") for s in finetune.stages)
    with pytest.raises(ValueError, match="name the set to replay"):  # "start" needs a model to read
        Stage("target", init="backbone:megnet-eform", replay="start")
    assert (replaying.boosting_weight, replaying.boosting_low_fidelity) == (0.4, "aflow_agl")
    paper = {r.name: r for r in builtin_recipes(paper=True)}
    for stage in paper["two-stage"].stages:
        assert (stage.epochs, stage.batch_size, stage.lr, stage.n_splits) == (300, 8, 1e-3, None)


def test_recipe_from_toml_and_yaml(tmp_path):
    (tmp_path / "mine.toml").write_text(
        'description = "two stages"\n'
        '[[stages]]\nname = "pre"\ndataset = "hh143"\ninit = "backbone:megnet-eform"\nepochs = 3\n'
        '[[stages]]\nname = "target"\ninit = "stage:pre"\nepochs = 5\nlr = 5e-4\nhead_hidden = [64, 32]\n'
    )
    recipe = Recipe.from_file(tmp_path / "mine.toml")
    assert recipe.name == "mine" and recipe.stage("target").lr == 5e-4
    assert recipe.stage("pre").dataset == "hh143" and recipe.stage("target").head_hidden == (64, 32)
    (tmp_path / "mine.yaml").write_text(
        "name: y\nstages:\n  - {name: target, init: 'backbone:megnet-random', epochs: 2}\n"
    )
    assert resolve_recipe(str(tmp_path / "mine.yaml")).stages[0].epochs == 2
    assert Recipe.from_dict(recipe.to_dict()) == recipe


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"name": "x", "stages": [{"name": "target", "init": "megnet-eform"}]}, "init must be"),
        ({"name": "x", "stages": [{"name": "target", "init": "stage:nope"}]}, "unknown or later stage"),
        ({"name": "x", "stages": [{"name": "a", "dataset": "hh143"}]}, "last stage must train on 'target'"),
        ({"name": "x", "stages": [{"name": "target", "epoch": 3}]}, "unknown setting"),
        ({"name": "x", "stages": []}, "no stage"),
        ({"name": "x", "members": 0, "stages": [{"name": "target"}]}, "members must be at least 1"),
        ({"name": "x", "estimate": "median", "stages": [{"name": "target"}]}, "estimate must be one of"),
        ({"name": "x", "seeds": 3, "stages": [{"name": "target"}]}, r"unknown setting\(s\) \['seeds'\]"),
        ({"name": "x", "reseed": "first", "stages": [{"name": "target"}]}, "reseed must be one of"),
        ({"name": "x", "rotate": True, "stages": [{"name": "target"}]}, "need members > 1"),
        ({"name": "x", "stages": [{"name": "target", "monitor": "loss"}]}, "monitor must be one of"),
        (
            {"name": "x", "boosting_weight": 1.0, "stages": [{"name": "target"}]},
            r"boosting_weight .* in \[0, 1\)",
        ),
        (
            {"name": "x", "boosting_low_fidelity": "aflow_agl", "stages": [{"name": "target"}]},
            "boosting_low_fidelity .* needs boosting_weight > 0",
        ),
    ],
)
def test_bad_recipes_are_clear_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        Recipe.from_dict(bad)


def test_stage_chaining_resume_and_reuse(tmp_path, aflow_subset, togo15):
    recipe = with_dataset(tiny_two_stage(), aflow_subset)
    runner = RecipeRunner(tmp_path / "stages", progress=False)
    result = runner.run(recipe, togo15, tmp_path / "run", n_splits=3)
    assert result.summary["n_splits"] == 3 and "mape" in result.summary["unbiased"]

    stage_dirs = sorted((tmp_path / "stages").glob("*/split_*"))
    assert [p.name for p in stage_dirs] == ["split_0", "split_1"]  # 2 AFLOW models shared by 3 target splits
    for k in range(3):
        meta = json.loads((tmp_path / "run" / f"split_{k}" / "target" / "model" / "model.json").read_text())[
            "metadata"
        ]
        assert meta["initialised_from"].endswith(
            f"split_{k % 2}/model"
        )  # split k continues from AFLOW model k
        aflow_split = json.loads((stage_dirs[k % 2] / "split.json").read_text())
        assert aflow_split == random_splits(runner.dataset(aflow_subset).ids, n_splits=2)[k % 2].to_dict()

    # the target stage really starts from the AFLOW weights (not from Eform): with 0 effective
    # learning, its backbone would equal AFLOW's; here we check the loaded start differs from Eform
    aflow0 = LTCModel.load(stage_dirs[0] / "model")
    eform = LTCModel.from_backbone("megnet-eform", head_hidden=(8,))
    key = "embedding.layer_node_embedding.weight"
    assert not torch.allclose(aflow0.backbone.state_dict()[key], eform.backbone.state_dict()[key])

    # interrupt: lose split 2's target stage and leave a half-written folder behind
    shutil.rmtree(tmp_path / "run" / "split_2" / "target")
    (tmp_path / "run" / "split_2" / "target.partial").mkdir()
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "run").glob("split_[01]/target/metrics.json")}
    logs: list[str] = []
    RecipeRunner(tmp_path / "stages", progress=False, log=logs.append).run(
        recipe, togo15, tmp_path / "run", n_splits=3
    )
    assert {p: p.stat().st_mtime_ns for p in before} == before  # finished splits untouched
    trained = [line for line in logs if line.startswith("  stage") and "already trained" not in line]
    assert len(trained) == 1 and "split_2" in trained[0] and "target" in trained[0]
    assert not (tmp_path / "run" / "split_2" / "target.partial").exists()

    # a second target set reuses the AFLOW models
    logs.clear()
    RecipeRunner(tmp_path / "stages", progress=False, log=logs.append).run(
        recipe, "hh143", tmp_path / "hh", n_splits=2
    )
    assert sum("already trained" in line for line in logs) == 2
    assert len(run_models(tmp_path / "hh")) == 2
    assert len(load_model(tmp_path / "hh")) == 2


def test_seed_members_per_split(tmp_path, togo15):
    """members=2: the last stage twice per split (seeds 42, 43), each split scored on their combination."""
    recipe = Recipe(
        "tiny-members",
        (Stage("target", init="backbone:megnet-eform", epochs=2, batch_size=32, head_hidden=(8,)),),
        members=2,
        estimate="min_mape",
    )
    assert Recipe.from_dict(recipe.to_dict()) == recipe
    result = RecipeRunner(progress=False).run(recipe, togo15, tmp_path / "run", n_splits=2)
    for k, split in enumerate(random_splits(togo15.ids, n_splits=2)):
        folder = tmp_path / "run" / f"split_{k}"
        seeds = [
            json.loads((folder / name / "metrics.json").read_text())["settings"]["seed"]
            for name in ("target", "target_member1")
        ]
        assert seeds == [42, 43]
        models = [LTCModel.load(folder / name / "model") for name in ("target", "target_member1")]
        validation = [togo15.atoms[i] for i in togo15.indices(split.validation)]
        members = np.stack([m.predict(validation) for m in models], axis=1)
        assert not np.allclose(members[:, 0], members[:, 1])  # two seeds, two models
        combined = point_estimate(members, "min_mape")  # the kept weights' predictions
        with open(folder / "ensemble" / "validation_predictions.csv") as handle:
            rows = list(csv.DictReader(handle))
        np.testing.assert_allclose([float(r["ltc_pred"]) for r in rows], combined, rtol=1e-4)
        scored = json.loads((folder / "ensemble" / "metrics.json").read_text())
        assert scored["validation"]["mape"] == pytest.approx(
            regression_metrics(togo15.labels[togo15.indices(split.validation)], combined)["mape"], rel=1e-3
        )
        assert result.per_split[k]["final_validation"] == scored["final_validation"]
    assert result.summary["unbiased"]["mape"]["values"] == [
        m["final_validation"]["mape"] for m in result.per_split
    ]
    assert (tmp_path / "run" / "parity.png").exists()
    assert "min_mape estimate of its 2 seed members" in (tmp_path / "run" / "summary.md").read_text()
    # the run is one ensemble of every member; a rerun trains nothing
    assert len(run_models(tmp_path / "run")) == 4 and len(load_model(tmp_path / "run")) == 4
    assert load_model(tmp_path / "run").default_estimate == "min_mape"  # what the run was scored with
    logs: list[str] = []
    RecipeRunner(progress=False, log=logs.append).run(recipe, togo15, tmp_path / "run", n_splits=2)
    assert sum("already trained" in line for line in logs) == 4


def test_members_with_their_own_aflow_models(tmp_path, aflow_subset, togo15):
    """reseed="all": member i trains its own AFLOW models (seed + i) and fine-tunes from them."""
    from dataclasses import replace

    one = with_dataset(tiny_two_stage(), aflow_subset)
    recipe = replace(one, members=2, reseed="all", estimate="geometric")
    assert Recipe.from_dict(recipe.to_dict()) == recipe and recipe.to_dict()["reseed"] == "all"
    result = RecipeRunner(tmp_path / "stages", progress=False).run(
        recipe, togo15, tmp_path / "run", n_splits=2
    )
    chains = sorted((tmp_path / "stages").iterdir())
    assert len(chains) == 2  # two AFLOW chains of 2 models each, one per member
    own = {  # AFLOW seed → its chain folder
        json.loads((c / "split_0" / "metrics.json").read_text())["settings"]["seed"]: c for c in chains
    }
    assert set(own) == {42, 43}
    # member 0's AFLOW models are the one-member recipe's: same fingerprint, shared cache folder
    assert own[42].name.endswith(stage_fingerprint(one, one.stages[0]))
    for k in range(2):
        for name, seed in (("target", 42), ("target_member1", 43)):
            folder = tmp_path / "run" / f"split_{k}" / name
            start = json.loads((folder / "model" / "model.json").read_text())["metadata"]["initialised_from"]
            assert start == str(own[seed] / f"split_{k}" / "model")
            assert json.loads((folder / "metrics.json").read_text())["settings"]["seed"] == seed
    assert result.summary["reseed"] == "all" and len(load_model(tmp_path / "run")) == 4
    assert (
        "each fine-tuned from its own earlier-stage models" in (tmp_path / "run" / "summary.md").read_text()
    )
    logs: list[str] = []
    RecipeRunner(tmp_path / "stages", progress=False, log=logs.append).run(
        recipe, togo15, tmp_path / "run", n_splits=2
    )
    assert sum("already trained" in line for line in logs) == 8  # 2 splits × 2 members × (AFLOW + target)


def test_rotated_members_continue_from_the_next_aflow_models(tmp_path, aflow_subset, togo15, capsys):
    """rotate: member i of split k fine-tunes from AFLOW model (k + i) mod 2; no AFLOW model is added."""
    from dataclasses import replace

    one = with_dataset(tiny_two_stage(), aflow_subset)
    recipe = replace(one, members=2, rotate=True)
    assert Recipe.from_dict(recipe.to_dict()) == recipe and recipe.to_dict()["rotate"] is True
    assert "rotate" not in replace(recipe, rotate=False).to_dict()  # older records stay as they were
    result = RecipeRunner(tmp_path / "stages", progress=False).run(
        recipe, togo15, tmp_path / "run", n_splits=3
    )
    (chain,) = (tmp_path / "stages").iterdir()  # the one-member recipe's AFLOW models, shared
    assert chain.name.endswith(stage_fingerprint(one, one.stages[0]))
    assert sorted(p.name for p in chain.iterdir()) == ["split_0", "split_1"]
    for k in range(3):
        for member, name in enumerate(("target", "target_member1")):
            folder = tmp_path / "run" / f"split_{k}" / name
            start = json.loads((folder / "model" / "model.json").read_text())["metadata"]["initialised_from"]
            assert start == str(chain / f"split_{(k + member) % 2}" / "model")
            assert json.loads((folder / "metrics.json").read_text())["settings"]["seed"] == 42 + member
    assert result.summary["rotate"] is True and result.summary["reseed"] == "last"
    assert (
        "fine-tuned from the earlier-stage models of split k + i"
        in (tmp_path / "run" / "summary.md").read_text()
    )
    # the same from the command line: --rotate reaches the recipe, and the AFLOW models are reused
    (tmp_path / "two.json").write_text(json.dumps(one.to_dict()))
    argv = ["train", "--recipe", str(tmp_path / "two.json"), "--dataset", "togo15", "--n-splits", "3"]
    argv += [
        "--members",
        "2",
        "--rotate",
        "--stage-cache",
        str(tmp_path / "stages"),
        "--out",
        str(tmp_path / "cli"),
    ]
    assert main([*argv, "--no-progress"]) == 0
    assert json.loads((tmp_path / "cli" / "recipe.json").read_text())["rotate"] is True
    assert main(["train", "--recipe", str(tmp_path / "two.json"), "--dataset", "togo15", "--rotate"]) == 2
    assert "add --members N" in capsys.readouterr().err  # one member per split: nothing to rotate
    assert len(list((tmp_path / "stages").iterdir())) == 1
    # resuming that folder without --rotate would mix rotated and unrotated members: refused
    with pytest.raises(ValueError, match=r"rotate=False \(the run: True\)"):
        RecipeRunner(tmp_path / "stages", progress=False).run(
            replace(recipe, rotate=False), togo15, tmp_path / "cli", n_splits=3
        )
    with pytest.raises(ValueError, match="other stage settings"):
        RecipeRunner(tmp_path / "stages", progress=False).run(
            recipe.with_overrides(epochs=2), togo15, tmp_path / "cli", n_splits=3
        )
    other = random_splits(togo15.ids, n_splits=3, first_seed=7)
    with pytest.raises(ValueError, match="split 0 differs"):
        RecipeRunner(tmp_path / "stages", progress=False).run(recipe, togo15, tmp_path / "cli", splits=other)
    # what only rescores is allowed: another estimate, from the models already there
    rescored = RecipeRunner(tmp_path / "stages", progress=False).run(
        replace(recipe, estimate="min_mape"), togo15, tmp_path / "cli", n_splits=3
    )
    assert rescored.summary["estimate"] == "min_mape"


def test_per_split_fidelity_aware_pretraining_from_a_file(tmp_path, aflow_subset, togo15):
    """The docs' joint-fidelity recipe, tiny: a target-set stage before the last runs per split."""
    (tmp_path / "joint.toml").write_text(
        f'[[stages]]\nname = "joint"\ndataset = "target"\ninit = "backbone:megnet-eform"\n'
        f'replay = "{aflow_subset}"\nreplay_size = 40\nfidelity = 1\nloss = "log_l1"\nkeep = "last"\n'
        "epochs = 1\nbatch_size = 64\nhead_hidden = [8]\n"
        '[[stages]]\nname = "target"\ninit = "stage:joint"\ndescriptors = true\nepochs = 1\nbatch_size = 64\n'
    )
    result = RecipeRunner(tmp_path / "stages", progress=False).run(
        str(tmp_path / "joint.toml"), togo15, tmp_path / "run", n_splits=2
    )
    assert not (tmp_path / "stages").exists()  # nothing shared between splits: each saw its own labels
    for k, split in enumerate(random_splits(togo15.ids, n_splits=2)):
        joint = json.loads((tmp_path / "run" / f"split_{k}" / "joint" / "metrics.json").read_text())
        assert joint["split"]["n_train"] == len(split.train)  # validated on the target split only
        assert joint["settings"]["replay_size"] == 40 and joint["settings"]["fidelity"] == 1
        model = LTCModel.load(tmp_path / "run" / f"split_{k}" / "target" / "model")
        assert model.metadata["initialised_from"] == str(tmp_path / "run" / f"split_{k}" / "joint" / "model")
        assert model.state_index == 1 and model.uses_descriptors  # predicts at the phono3py fidelity
    assert result.summary["n_splits"] == 2


def test_cli_stage_options_override_every_stage_of_a_recipe(tmp_path, aflow_subset, capsys):
    """--seed, --lr, --head-hidden... reach every stage of a recipe; one-model options are refused."""
    recipe = with_dataset(tiny_two_stage(), aflow_subset)
    (tmp_path / "two.json").write_text(json.dumps(recipe.to_dict()))
    argv = ["train", "--recipe", str(tmp_path / "two.json"), "--dataset", "togo15", "--n-splits", "1"]
    out = tmp_path / "run"
    options = ["--seed", "7", "--lr", "0.002", "--head-hidden", "8,4", "--out", str(out), "--no-progress"]
    assert main([*argv, *options, "--stage-cache", str(tmp_path / "stages")]) == 0
    stages = json.loads((out / "recipe.json").read_text())["stages"]
    assert [(s["seed"], s["lr"], s["head_hidden"]) for s in stages] == [(7, 0.002, [8, 4])] * 2
    assert [s["epochs"] for s in stages] == [1, 1]  # what the command line leaves out stays the recipe's
    for folder in (out / "split_0" / "target", next((tmp_path / "stages").iterdir()) / "split_0"):
        assert json.loads((folder / "metrics.json").read_text())["settings"]["seed"] == 7
    capsys.readouterr()
    assert main([*argv, "--backbone", "megnet-random", "--out", str(tmp_path / "other")]) == 2
    assert "--backbone trains one model and cannot go with --recipe" in capsys.readouterr().err
    assert main([*argv, "--split-index", "3", "--out", str(tmp_path / "other")]) == 2
    assert "a recipe runs every split" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()


def test_cli_recipe_from_file_and_evaluate(tmp_path, capsys):
    path = tmp_path / "quick.toml"
    path.write_text(
        '[[stages]]\nname = "target"\ninit = "backbone:megnet-random"\nepochs = 1\nbatch_size = 64\n'
        "head_hidden = [8]\n"
    )
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--recipe",
                str(path),
                "--dataset",
                "togo15",
                "--n-splits",
                "2",
                "--members",
                "2",
                "--estimate",
                "min_mape",
                "--reseed",
                "all",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["recipe"] == "quick" and summary["n_splits"] == 2
    assert json.loads((out / "recipe.json").read_text())["members"] == 2
    assert json.loads((out / "recipe.json").read_text())["reseed"] == "all" and summary["reseed"] == "all"
    assert (out / "split_1" / "target_member1" / "curve.csv").exists()
    assert json.loads((out / "split_1" / "ensemble" / "metrics.json").read_text())["estimate"] == "min_mape"
    capsys.readouterr()
    assert main(["evaluate", str(out), "--dataset", "hh143", "--out", str(tmp_path / "ev.json")]) == 0
    evaluation = json.loads((tmp_path / "ev.json").read_text())
    assert evaluation["n_members"] == 4 and evaluation["n_structures"] == 143
    assert evaluation["ensemble"]["estimate"] == "min_mape"  # the run's own estimate
    assert evaluation["ensemble"]["mape"] != evaluation["ensemble_mean"]["mape"]
    assert "ensemble min_mape prediction" in capsys.readouterr().out
    assert evaluation["seen"] == {}  # trained on Togo15: no half-Heusler seen
    # MIX holds Togo15: those 95 scores are training fits, and evaluate says so
    with pytest.warns(UserWarning, match="trained on togo15, which holds the formula of 95 of mix's 238"):
        assert main(["evaluate", str(out), "--dataset", "mix", "--out", str(tmp_path / "ev-mix.json")]) == 0
    assert json.loads((tmp_path / "ev-mix.json").read_text())["seen"] == {"togo15": 95}


def quick_hybrid_train_argv(tmp_path, out) -> list[str]:
    """``matgl-ltc train`` arguments for a 2-epoch, 2-split hybrid recipe on Togo15 into ``out``."""
    path = tmp_path / "quick.toml"
    path.write_text(
        '[[stages]]\nname = "target"\ninit = "backbone:megnet-eform"\nepochs = 2\nbatch_size = 32\n'
        "head_hidden = [8]\ndescriptors = true\n"
    )
    return ["train", "--recipe", str(path), "--dataset", "togo15", "--n-splits", "2", "--out", str(out)]


def test_boosted_run_blends_each_split_booster(tmp_path, togo15, capsys):
    """--boosting-weight: a booster per split, scored and loaded with the members, and resumed."""
    out = tmp_path / "run"
    argv = quick_hybrid_train_argv(tmp_path, out)
    assert main([*argv, "--boosting-weight", "0.3", "--no-progress"]) == 0
    recipe = json.loads((out / "recipe.json").read_text())
    assert recipe["boosting_weight"] == 0.3 and recipe["members"] == 1
    assert "descriptor booster (gradient-boosted trees) takes 0.3" in capsys.readouterr().out
    ensemble = load_model(out)
    assert len(ensemble) == 2 and len(ensemble.boosters) == 2 and ensemble.boosting_weight == 0.3
    x = descriptor_matrix(togo15.atoms)
    for k, split in enumerate(random_splits(togo15.ids, n_splits=2)):
        folder = out / f"split_{k}"
        train, val = togo15.indices(split.train), togo15.indices(split.validation)
        booster = DescriptorBoosting.load(folder / "boosting")
        assert booster.metadata["n_train"] == len(train)  # fitted on the split's training part only
        boosted = 10 ** booster.predict_log10(x[val])
        member = LTCModel.load(folder / "target" / "model").predict([togo15.atoms[i] for i in val])
        with open(folder / "ensemble" / "validation_predictions.csv") as handle:
            rows = list(csv.DictReader(handle))
        np.testing.assert_allclose([float(r["ltc_boosting"]) for r in rows], boosted, rtol=1e-5)
        blended = np.exp(0.7 * np.log(member) + 0.3 * np.log(boosted))  # geometric: the recipe's estimate
        np.testing.assert_allclose([float(r["ltc_pred"]) for r in rows], blended, rtol=1e-4)
        scored = json.loads((folder / "ensemble" / "metrics.json").read_text())
        assert scored["boosting_validation"] == pytest.approx(
            regression_metrics(togo15.labels[val], boosted), rel=1e-3
        )
        assert scored["validation"]["mape"] == pytest.approx(
            regression_metrics(togo15.labels[val], blended)["mape"], rel=1e-3
        )
    # the loaded ensemble blends all members with the geometric mean of all boosters
    structures = [togo15.atoms[i] for i in range(5)]
    prediction = ensemble.predict(structures)
    members = np.stack([m.predict(structures) for m in ensemble.members], axis=1)
    boosters = 10 ** np.mean([b.predict_log10(x[:5]) for b in ensemble.boosters], axis=0)
    np.testing.assert_allclose(prediction.boosted, boosters, rtol=1e-6)
    np.testing.assert_allclose(prediction.members, members, rtol=1e-5)
    np.testing.assert_allclose(
        prediction.geometric_mean,
        np.exp(0.7 * np.log(members).mean(axis=1) + 0.3 * np.log(boosters)),
        rtol=1e-5,
    )
    np.testing.assert_allclose(prediction.mean, 0.7 * members.mean(axis=1) + 0.3 * boosters, rtol=1e-5)
    saved = load_model(ensemble.save(tmp_path / "saved"))
    assert len(saved.boosters) == 2
    np.testing.assert_allclose(saved.predict(structures).geometric_mean, prediction.geometric_mean, rtol=1e-5)
    scanned = read_scan(scan(structures, tmp_path / "scan.csv", saved, progress=False).output)
    np.testing.assert_allclose(scanned["ltc_geometric"], prediction.geometric_mean, rtol=1e-5)
    np.testing.assert_allclose(scanned["ltc_mean"], prediction.mean, rtol=1e-5)
    # resuming fits nothing again; the summary's numbers are the blended ones
    metrics = json.loads((out / "summary.json").read_text())["unbiased"]["mape"]["values"]
    assert main([*argv, "--boosting-weight", "0.3", "--no-progress"]) == 0
    assert "boosting: togo15" not in capsys.readouterr().out
    assert json.loads((out / "summary.json").read_text())["unbiased"]["mape"]["values"] == metrics
    # evaluate scores the blend, and the boosters alone beside it
    assert main(["evaluate", str(out), "--dataset", "togo15", "--out", str(tmp_path / "ev.json")]) == 0
    evaluation = json.loads((tmp_path / "ev.json").read_text())
    every = 10 ** np.mean([b.predict_log10(x) for b in ensemble.boosters], axis=0)
    assert evaluation["boosting"] == pytest.approx(regression_metrics(togo15.labels, every), rel=1e-5)
    assert evaluation["boosting_weight"] == 0.3 and evaluation["ensemble"]["estimate"] == "geometric"
    assert "descriptor boosters alone" in capsys.readouterr().out


def test_a_booster_that_also_learns_from_a_low_fidelity_set(tmp_path, togo15, aflow_subset, capsys):
    """--boosting-low-fidelity: AGL rows beside the split's training rows, refitted when it changes."""
    out = tmp_path / "run"
    argv = quick_hybrid_train_argv(tmp_path, out)
    argv += ["--boosting-weight", "0.4", "--no-progress"]
    assert main(argv) == 0
    plain = [DescriptorBoosting.load(out / f"split_{k}" / "boosting") for k in range(2)]
    assert not any(b.multi_fidelity for b in plain)
    capsys.readouterr()
    assert main([*argv, "--boosting-low-fidelity", aflow_subset]) == 0  # the same run, resumed
    printed = capsys.readouterr().out
    assert printed.count("boosting: togo15") == 2  # a changed setting fits every booster again
    assert f"also learns from {aflow_subset}, with the fidelity as an input" in printed
    assert json.loads((out / "recipe.json").read_text())["boosting_low_fidelity"] == aflow_subset
    x = descriptor_matrix(togo15.atoms)
    for k, split in enumerate(random_splits(togo15.ids, n_splits=2)):
        booster = DescriptorBoosting.load(out / f"split_{k}" / "boosting")
        assert booster.multi_fidelity and booster.metadata["n_train"] == len(split.train)
        assert booster.metadata["low_fidelity"] == {"n_train": 200, "weight": 30.0, "dataset": aflow_subset}
        val = togo15.indices(split.validation)
        assert not np.allclose(booster.predict_log10(x[val]), plain[k].predict_log10(x[val]))
    ensemble = load_model(out)
    structures = [togo15.atoms[i] for i in range(5)]
    boosters = 10 ** np.mean([b.predict_log10(x[:5]) for b in ensemble.boosters], axis=0)
    np.testing.assert_allclose(ensemble.predict(structures).boosted, boosters, rtol=1e-6)


# one epoch from a fresh head leaves MAPE's first overshoot below zero, which fit rightly reports
@pytest.mark.filterwarnings("ignore:.*validation structures get κ ≤ 0:RuntimeWarning")
def test_reproduce_table(tmp_path):
    from matgl_ltc.train.reproduce import reproduce

    table = reproduce(
        tmp_path, recipes=["scratch", "pretrained"], datasets=["togo15"], n_splits=2, epochs=1, progress=False
    )
    md = (tmp_path / "reproduce.md").read_text()
    assert "| togo15 | scratch | 0.54 |" in md and "| togo15 | pretrained | 0.51 |" in md
    assert set(table["togo15"]) == {"scratch", "pretrained"}


def test_every_stage_setting_reaches_training(tmp_path, aflow_subset, togo15):
    target = Stage(
        "target", init="backbone:megnet-eform", average_last=1, freeze=("backbone.embedding",), fidelity=1,
        replay=aflow_subset, replay_size=7, keep="last", descriptors=True, monitor="log10_mae", l2_sp=0.1, **TINY,
    )  # fmt: skip
    runner = RecipeRunner(tmp_path / "stages", progress=False)
    runner.run(Recipe("settings", (target,)), togo15, tmp_path / "run", n_splits=1)
    metrics = json.loads((tmp_path / "run" / "split_0" / "target" / "metrics.json").read_text())
    settings = metrics["settings"]
    assert metrics["monitor"] == "log10_mae"
    for key, value in target.fit_kwargs().items():
        if key in ("keep", "replay", "monitor"):
            continue
        assert settings[key] == (list(value) if isinstance(value, tuple) else value), key
    assert settings["replay"] and settings["replay_size"] == 7
    model = LTCModel.load(tmp_path / "run" / "split_0" / "target" / "model")
    assert model.state_index == 1 and model.uses_descriptors


def test_fine_tuning_a_shipped_ensemble(tmp_path, togo15, capsys):
    """init = "model:NAME": split k (member i, rotated) continues from model (k + i) mod n of the ensemble."""
    import warnings

    from matgl_ltc.model import ModelLoadError, model_folders

    shipped = model_folders("LTC-MEGNet-Togo15-hybrid")
    assert [p.name for p in shipped] == [f"member_{i}" for i in range(9)]
    assert model_folders(shipped[3]) == [shipped[3]]
    with pytest.raises(ModelLoadError, match="neither a known model"):
        model_folders("no-such-model")
    with pytest.raises(ValueError, match="'model:<name or folder>'"):
        Stage("target", init="weights:foo")

    recipe = Recipe(
        "finetune",
        (Stage("target", init="model:LTC-MEGNet-Togo15-hybrid", freeze=("backbone",), **TINY),),
        members=2,
        rotate=True,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # half-Heuslers: no formula of Togo15, nothing to warn about
        RecipeRunner(progress=False).run(recipe, "hh143", tmp_path / "hh", n_splits=2)
    key = "embedding.layer_node_embedding.weight"
    for k in range(2):
        for member, name in enumerate(("target", "target_member1")):
            folder = tmp_path / "hh" / f"split_{k}" / name / "model"
            meta = json.loads((folder / "model.json").read_text())["metadata"]
            assert meta["initialised_from"] == str(shipped[k + member]) and meta["dataset"] == "hh143"
            tuned, start = LTCModel.load(folder), LTCModel.load(shipped[k + member])
            assert tuned.uses_descriptors  # the shipped hybrid head, not a fresh one of width 8
            assert torch.equal(tuned.backbone.state_dict()[key], start.backbone.state_dict()[key])
            head = next(iter(tuned.head.state_dict()))
            assert not torch.equal(tuned.head.state_dict()[head], start.head.state_dict()[head])  # trained
    assert run_models(tmp_path / "hh") == model_folders(tmp_path / "hh")

    # packaged into a shareable ensemble: σ recalibrated on held-out residuals, a model card
    pkg = tmp_path / "pkg"
    assert main(["package", str(tmp_path / "hh"), "-o", str(pkg), "--name", "hh-tuned"]) == 0
    packaged = load_model(pkg)
    calibration = json.loads((pkg / "ensemble.json").read_text())["metadata"]["calibration"]
    assert len(packaged) == 4 and packaged.sigma_scale == pytest.approx(calibration["sigma_scale"])
    assert packaged.sigma_scale != 1.0 and calibration["raw"]["n"] == 4 * 29  # each model on its 29 held out
    card = (pkg / "README.md").read_text()
    assert card.startswith("# hh-tuned") and "fine-tuned from `LTC-MEGNet-Togo15-hybrid`" in card
    assert "29 composition/structure descriptors" in card and "2 per split" in card

    # fine-tuned on the set the members were trained on, every validation score is on seen data
    with pytest.warns(UserWarning, match="trained on togo15, which holds the formula of 95 of togo15's 95"):
        RecipeRunner(progress=False).run(recipe, togo15, tmp_path / "togo", n_splits=2)

    # replaying the set the shipped members learnt, so that fine-tuning does not overwrite it
    # and the blend's trees learn from the replayed structures too
    replaying = Recipe(
        "finetune-replay",
        (Stage("target", init="model:LTC-MEGNet-Togo15-hybrid", replay="start", **TINY),),
        boosting_weight=0.4,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no Togo15 formula among the half-Heuslers
        RecipeRunner(progress=False).run(replaying, "hh143", tmp_path / "hh-replay", n_splits=1)
    settings = json.loads((tmp_path / "hh-replay" / "split_0" / "target" / "metrics.json").read_text())
    assert settings["settings"]["replay"] == "togo15" and settings["settings"]["replay_size"] == 95
    # "start" is read from the shipped members' metadata and recorded as the set it named
    assert json.loads((tmp_path / "hh-replay" / "recipe.json").read_text())["stages"][0]["replay"] == "togo15"
    assert settings["split"]["n_train"] == 114  # the replayed structures train, they are not the split's
    trees = DescriptorBoosting.load(tmp_path / "hh-replay" / "split_0" / "boosting")
    assert trees.metadata["replay"] == {"dataset": "togo15", "n_train": 95}
    assert trees.metadata["n_train"] == 114 + 95
    # the replayed crystals' elements are in the model's domain, and its card says what it replayed
    tuned = LTCModel.load(tmp_path / "hh-replay" / "split_0" / "target" / "model")
    assert set(togo15.elements(range(len(togo15)))) <= set(tuned.metadata["train_elements"])
    assert (
        main(["package", str(tmp_path / "hh-replay"), "-o", str(tmp_path / "pkg-replay"), "--name", "r"]) == 0
    )
    assert "O" in load_model(tmp_path / "pkg-replay").train_elements  # no half-Heusler holds oxygen
    card = (tmp_path / "pkg-replay" / "README.md").read_text()
    assert "replaying togo15" in card and "Trained on `hh143` (and `togo15`, replayed in every epoch)" in card
    with pytest.warns(UserWarning, match="the stage replays togo15, which holds the formula of 95 of"):
        RecipeRunner(progress=False).run(replaying, togo15, tmp_path / "togo-replay", n_splits=1)
    # a model that learnt from two sets replays their union, and a model that replayed a union
    # replays its parts, not the union twice
    for start, out in (("hh-replay", "again"), ("again", "again-2")):
        again = Recipe("again", (Stage("target", init=f"model:{tmp_path / start}", replay="start", **TINY),))
        replays = r"the stage replays hh143\+togo15, which holds the formula of 143"
        seen = f"{start} was trained on hh143, which holds the formula of 143"
        with pytest.warns(UserWarning, match=replays), pytest.warns(UserWarning, match=seen):
            RecipeRunner(progress=False).run(again, "hh143", tmp_path / out, n_splits=1)
        stage = json.loads((tmp_path / out / "recipe.json").read_text())["stages"][0]
        metrics = json.loads((tmp_path / out / "split_0" / "target" / "metrics.json").read_text())
        assert stage["replay"] == metrics["settings"]["replay"] == "hh143+togo15"
        assert metrics["settings"]["replay_size"] == 238

    # one model from the command line: --split-index 10 of a 9-member ensemble starts from member 1
    argv = ["train", "--dataset", "hh143", "--from-model", "LTC-MEGNet-Togo15-hybrid", "--split-index", "10"]
    assert (
        main([*argv, "--epochs", "1", "--batch-size", "64", "--out", str(tmp_path / "one"), "--no-progress"])
        == 0
    )
    meta = json.loads((tmp_path / "one" / "model" / "model.json").read_text())["metadata"]
    assert meta["initialised_from"] == str(shipped[1]) and "fine-tuning" in capsys.readouterr().out
    assert main([*argv, "--backbone", "megnet-eform"]) == 2
    assert "drop --backbone" in capsys.readouterr().err
    # ... and, replaying Togo15 as the recipe does, from the command line too
    replayed = ["--replay", "start", "--epochs", "1", "--batch-size", "64", "--no-progress"]
    assert main([*argv, *replayed, "--out", str(tmp_path / "one-replay")]) == 0
    meta = json.loads((tmp_path / "one-replay" / "model" / "model.json").read_text())["metadata"]
    assert (meta["training"]["replay"], meta["training"]["replay_size"]) == ("togo15", 95)
    assert "replaying togo15 (95 structures)" in capsys.readouterr().out
    assert main(["train", "--dataset", "hh143", "--recipe", "finetune-shipped", "--replay", "togo15"]) == 2
    assert "replay = 'start|NAME|PATH'" in capsys.readouterr().err
    assert main(["train", "--dataset", "hh143", "--replay", "start", "--epochs", "1"]) == 2
    assert "add --from-model" in capsys.readouterr().err
    togo = ["train", "--dataset", "togo15", "--from-model", "LTC-MEGNet-Togo15-hybrid", "--epochs", "1"]
    with pytest.warns(UserWarning, match="LTC-MEGNet-Togo15-hybrid was trained on togo15"):
        assert main([*togo, "--batch-size", "64", "--out", str(tmp_path / "seen"), "--no-progress"]) == 0
    assert json.loads((tmp_path / "seen" / "model" / "model.json").read_text())["metadata"]["stage"] is None
    capsys.readouterr()
    assert main(["train", "--dataset", "hh143", "--recipe", "two-stage", "--from-model", "x"]) == 2
    assert "init = 'model:NAME|PATH'" in capsys.readouterr().err


# one epoch from a fresh head leaves MAPE's first overshoot below zero, which fit rightly reports
@pytest.mark.filterwarnings("ignore:.*validation structures get κ ≤ 0:RuntimeWarning")
def test_a_tiny_file_set_warns_scores_blank_where_undefined_and_packages(tmp_path, togo15):
    import ase.io

    from matgl_ltc.analysis.evaluate import evaluate
    from matgl_ltc.data import load_dataset
    from matgl_ltc.train import package_run

    structures = [atoms.copy() for atoms in togo15.atoms[:10]]
    for atoms in structures:
        atoms.info["kappa"] = atoms.info.pop("ltc")
    ase.io.write(tmp_path / "ten.extxyz", structures)
    tiny = load_dataset(tmp_path / "ten.extxyz", label_key="kappa")
    one = ["train", "--dataset", str(tmp_path / "ten.extxyz"), "--label-key", "kappa", "--epochs", "1"]
    with pytest.warns(UserWarning, match="ten's validation split holds only 2 structure"):
        assert main([*one, "--batch-size", "64", "--out", str(tmp_path / "one"), "--no-progress"]) == 0
    recipe = Recipe("tiny", (Stage("target", init="backbone:megnet-eform", **TINY),))
    with pytest.warns(UserWarning, match="ten's validation splits hold as few as 2 structure"):
        result = RecipeRunner(progress=False).run(recipe, tiny, tmp_path / "run", n_splits=2)
    spearman = result.summary["unbiased"]["spearman"]
    assert np.isnan(spearman["mean"]) and len(spearman["values"]) == 2  # undefined on 2 structures
    assert "| spearman | — | — |" in (tmp_path / "run" / "summary.md").read_text()
    assert np.isfinite(result.summary["unbiased"]["log10_mae"]["mean"])
    # the run remembers its file (and label key), so packaging finds the held-out structures again
    recorded = json.loads((tmp_path / "run" / "summary.json").read_text())["dataset_source"]
    assert recorded == {"path": str((tmp_path / "ten.extxyz").resolve()), "label_key": "kappa"}
    packaged = package_run(tmp_path / "run", tmp_path / "pkg", "ten")
    calibration = json.loads((tmp_path / "pkg" / "ensemble.json").read_text())["metadata"]["calibration"]
    assert len(packaged) == 2 and calibration["raw"]["n"] == 4  # 2 held out per split
    # models trained on a file (read with the default label key) point at it: scored on it, they
    # are known to have seen it, and a fine-tuning of them can replay it as "start"
    ase.io.write(tmp_path / "ltc.extxyz", togo15.atoms[:10])
    plain = load_dataset(tmp_path / "ltc.extxyz")
    with pytest.warns(UserWarning, match="validation splits hold as few as 2"):
        RecipeRunner(progress=False).run(recipe, plain, tmp_path / "plain", n_splits=2)
    path = str((tmp_path / "ltc.extxyz").resolve())
    kappa_meta = LTCModel.load(tmp_path / "run" / "split_0" / "target" / "model").metadata
    kappa_file = str((tmp_path / "ten.extxyz").resolve())
    assert (kappa_meta["dataset_file"], kappa_meta["dataset_label_key"]) == (kappa_file, "kappa")
    with pytest.warns(UserWarning, match="which holds the formula of 10 of ten's 10"):
        assert evaluate(load_model(tmp_path / "run"), tiny)["seen"] == {kappa_file: 10}
    from_kappa = Recipe("k", (Stage("target", init=f"model:{tmp_path / 'run'}", replay="start", **TINY),))
    with pytest.raises(
        ValueError, match=r"learnt from .*ten.extxyz, whose labels are info\['kappa'\]; .* --label-key kappa"
    ):
        RecipeRunner(progress=False).run(from_kappa, plain, tmp_path / "from-kappa", n_splits=1)
    argv = [*one, "--from-model", str(tmp_path / "run"), "--replay", "start", "--out", str(tmp_path / "ft")]
    with (
        pytest.warns(UserWarning, match="trained on .*ten.extxyz, which holds the formula of 10"),
        pytest.warns(UserWarning, match="the stage replays ten, which holds the formula of 10"),
        pytest.warns(UserWarning, match="validation split holds only 2"),
    ):
        assert main([*argv, "--no-progress"]) == 0
    replayed = LTCModel.load(tmp_path / "ft" / "model").metadata["training"]
    assert (replayed["replay_file"], replayed["replay_label_key"]) == (kappa_file, "kappa")
    with pytest.warns(UserWarning, match=f"trained on {path}, which holds the formula of 10 of ltc's 10"):
        assert evaluate(load_model(tmp_path / "plain"), plain)["seen"] == {path: 10}
    again = Recipe("again", (Stage("target", init=f"model:{tmp_path / 'plain'}", replay="start", **TINY),))
    other = load_dataset("hh143").subset(load_dataset("hh143").ids[:25], name="hh25")
    RecipeRunner(progress=False).run(again, other, tmp_path / "again", n_splits=1)
    assert json.loads((tmp_path / "again" / "recipe.json").read_text())["stages"][0]["replay"] == path
    tuned = json.loads((tmp_path / "again" / "split_0" / "target" / "metrics.json").read_text())["settings"]
    assert tuned["replay_file"] == path and tuned["replay_size"] == 10
    (tmp_path / "ten.extxyz").rename(tmp_path / "moved.extxyz")
    with pytest.raises(FileNotFoundError, match="matgl-ltc package --dataset PATH"):
        package_run(tmp_path / "run", tmp_path / "pkg2", "ten")
