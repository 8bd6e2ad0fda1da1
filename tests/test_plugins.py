"""Plugin discovery: a real package installed from tests/plugin_pkg, seen through every surface."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import matgl_ltc
from matgl_ltc.cli import main
from matgl_ltc.plugins import available_backbones, available_recipes, reset_plugins

PLUGIN = Path(__file__).parent / "plugin_pkg"


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory):
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(PLUGIN),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    sys.path.insert(0, str(target))
    import importlib

    importlib.invalidate_caches()
    reset_plugins()
    yield target
    sys.path.remove(str(target))
    reset_plugins()


def test_builtins_register_through_the_hooks():
    reset_plugins()
    assert {"megnet-eform", "megnet-random", "megnet-bandgap"} <= set(available_backbones())
    assert {"scratch", "pretrained", "two-stage", "aflow-only"} <= set(available_recipes())


def test_plugin_backbone_recipe_and_model_are_visible(installed_plugin, tmp_path, capsys):
    with pytest.warns(UserWarning, match="'broken'"):
        backbones = available_backbones()
    assert (
        "tiny-megnet" in backbones and "megnet-eform" in backbones
    )  # the broken one did not take others down
    model = matgl_ltc.LTCModel.from_backbone("tiny-megnet", head_hidden=(8,))
    assert model.embedding_dim == 4
    assert "tiny-recipe" in available_recipes()
    assert "tiny-ltc" in matgl_ltc.list_models()
    loaded = matgl_ltc.load_model("tiny-ltc")
    assert isinstance(loaded, matgl_ltc.LTCModel) and loaded.backbone_config["nblocks"] == 1

    assert main(["models", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert "tiny-ltc" in listed["models"] and "tiny-megnet" in listed["backbones"]
    assert "tiny-recipe" in listed["recipes"]

    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--recipe",
                "tiny-recipe",
                "--dataset",
                "togo15",
                "--n-splits",
                "2",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    assert len(matgl_ltc.load_model(out)) == 2
    # a plugin's model is a starting point like a shipped one
    from matgl_ltc.model import model_folders

    tuned = tmp_path / "tuned"
    argv = ["train", "--dataset", "hh143", "--from-model", "tiny-ltc", "--epochs", "1", "--batch-size", "64"]
    assert main([*argv, "--out", str(tuned), "--no-progress"]) == 0
    meta = json.loads((tuned / "model" / "model.json").read_text())["metadata"]
    assert meta["initialised_from"] == str(model_folders("tiny-ltc")[0]) and meta["dataset"] == "hh143"
