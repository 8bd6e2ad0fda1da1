"""The ``matgl-ltc`` command line."""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import warnings
from pathlib import Path
from typing import Any

from .analysis.metrics import METRIC_NAMES
from .model.ensemble import ESTIMATES  # the package's import has loaded torch already
from .train.recipes import RESEED, builtin_recipes

METRIC_LABELS = {
    "mape": "MAPE",
    "median_ape": "median APE",
    "mae": "MAE (W/m/K)",
    "rmse": "RMSE (W/m/K)",
    "r2": "R²",
    "log10_mae": "MAE of log10 κ",
    "log10_rmse": "RMSE of log10 κ",
    "spearman": "Spearman ρ",
}


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.replace(" ", "").split(",") if x]


def format_metrics(metrics: dict[str, float], title: str = "validation") -> str:
    width = max(len(v) for v in METRIC_LABELS.values())
    lines = [f"{title}:"]
    for key, label in METRIC_LABELS.items():
        if key in metrics:
            lines.append(f"  {label:<{width}}  {metrics[key]:.4f}")
    return "\n".join(lines)


def _add_trainer_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("hardware (passed to lightning.Trainer)")
    group.add_argument("--accelerator", default="auto", help="cpu, gpu, auto ... (default: auto)")
    group.add_argument("--devices", default="auto", help="number or list of devices (default: auto)")
    group.add_argument(
        "--strategy", default="auto", help="e.g. ddp for several GPUs or nodes (default: auto)"
    )
    group.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _devices(text: str | None) -> Any:
    if text is None:
        return None
    return int(text) if text.isdigit() else text


def _trainer_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "accelerator": args.accelerator,
        "devices": _devices(str(args.devices)),
        "strategy": args.strategy,
    }


def _defaults(function: Any) -> dict[str, Any]:
    return {
        name: parameter.default
        for name, parameter in inspect.signature(function).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }


def _one_model_defaults() -> dict[str, Any]:
    """One model's training settings when the command line leaves them out.

    With ``--recipe`` the same options override every stage (as ``--epochs`` does), so their
    argparse default is None; taken from ``fit`` and ``LTCModel.from_backbone`` themselves, the
    command line cannot drift from the Python API.
    """
    from .model import LTCModel
    from .train import fit

    fit_defaults, model_defaults = _defaults(fit), _defaults(LTCModel.from_backbone)
    settings = ("batch_size", "lr", "min_lr_fraction", "loss", "keep", "monitor", "seed", "descriptors")
    return {
        "backbone": model_defaults["backbone"],
        "head_hidden": list(model_defaults["head_hidden"]),
        "split_index": 0,
        **{name: fit_defaults[name] for name in settings},
    }


#: Command-line options that are recipe-stage settings (option dest → Stage field).
STAGE_OPTIONS = {
    "epochs_override": "epochs",
    "batch_size": "batch_size",
    "lr": "lr",
    "min_lr_fraction": "min_lr_fraction",
    "loss": "loss",
    "keep": "keep",
    "monitor": "monitor",
    "head_hidden": "head_hidden",
    "seed": "seed",
    "descriptors": "descriptors",
}


def load_labelled(args: argparse.Namespace, source: str) -> Any:
    """A labelled dataset read as --label-key (for files: a registered set keeps its own key) and
    --skip-invalid say."""
    from .data import load_dataset
    from .plugins import available_datasets

    key = "ltc" if source in available_datasets() else args.label_key
    return load_dataset(source, label_key=key, on_invalid="skip" if args.skip_invalid else "raise")


def add_label_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("labelled structure files")
    group.add_argument(
        "--label-key",
        default="ltc",
        metavar="KEY",
        help="the atoms.info (or ase.db) key holding κ_L in W/m/K (default: ltc)",
    )
    group.add_argument(
        "--skip-invalid",
        action="store_true",
        help="leave out structures MEGNet cannot use or with a bad label, with a warning naming "
        "them, instead of stopping",
    )


def stage_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The stage settings given on the command line, for every stage of a recipe."""
    overrides = {field: getattr(args, dest) for dest, field in STAGE_OPTIONS.items()}
    return {k: v for k, v in overrides.items() if v is not None}


def cmd_train_recipe(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from .data import load_splits
    from .train import RecipeRunner, resolve_recipe

    for option, dest, instead in (
        ("--backbone", "backbone", "the recipe's stages name what they start from (init)"),
        ("--split-index", "split_index", "a recipe runs every split (--n-splits, --split-file)"),
        ("--from-model", "from_model", "a recipe stage starts from a model with init = 'model:NAME|PATH'"),
        ("--replay", "replay", "a recipe stage replays a set with replay = 'start|NAME|PATH'"),
    ):
        if getattr(args, dest) is not None:
            raise ValueError(f"{option} trains one model and cannot go with --recipe: {instead}")
    recipe = resolve_recipe(args.recipe, paper=args.paper).with_overrides(**stage_overrides(args))
    if (
        args.members is not None
        or args.estimate is not None
        or args.reseed is not None
        or args.rotate
        or args.boosting_weight is not None
        or args.boosting_low_fidelity is not None
    ):
        members = args.members or recipe.members
        if members == 1 and (args.reseed is not None or args.rotate):
            raise ValueError(
                f"--reseed and --rotate choose what a split's members start from, and recipe "
                f"{recipe.name!r} has one member per split: add --members N (N > 1)"
            )
        recipe = replace(
            recipe,
            members=members,
            estimate=args.estimate or recipe.estimate,
            reseed=args.reseed or recipe.reseed,
            rotate=args.rotate or recipe.rotate,
            boosting_weight=recipe.boosting_weight if args.boosting_weight is None else args.boosting_weight,
            boosting_low_fidelity=(
                recipe.boosting_low_fidelity
                if args.boosting_low_fidelity is None
                else args.boosting_low_fidelity
            ),
        )
    dataset = load_labelled(args, args.dataset)
    splits = load_splits(args.split_file) if args.split_file else None
    out = Path(args.out or f"runs/{recipe.name}-{dataset.name}")
    runner = RecipeRunner(args.stage_cache, progress=not args.no_progress, **_trainer_options(args))
    result = runner.run(recipe, dataset, out, n_splits=args.n_splits, splits=splits)
    print()
    print((out / "summary.md").read_text())
    print(f"per-split models and metrics in {out}; load them with matgl_ltc.load_model({str(out)!r})")
    return 0 if result.per_split else 1


def cmd_train(args: argparse.Namespace) -> int:
    from .data import load_splits
    from .data.splits import warn_if_few_validation
    from .model import LTCModel, model_folders
    from .train import fit
    from .train.fit import resolve_split
    from .train.recipes import REPLAY_START
    from .train.runner import start_replay, warn_if_replayed, warn_if_seen

    if args.recipe:
        return cmd_train_recipe(args)
    if args.from_model and (args.backbone is not None or args.head_hidden is not None):
        raise ValueError(
            "--from-model fine-tunes a model with its own backbone and head: drop --backbone/--head-hidden"
        )
    for dest, default in _one_model_defaults().items():
        if getattr(args, dest) is None:
            setattr(args, dest, default)
    dataset = load_labelled(args, args.dataset)
    split: Any = args.split_index
    if args.split_file:
        splits = load_splits(args.split_file)
        if args.split_index >= len(splits):
            raise SystemExit(
                f"--split-index {args.split_index} but {args.split_file} has {len(splits)} split(s)"
            )
        split = splits[args.split_index]
    split = resolve_split(dataset, split)
    warn_if_few_validation([split], dataset.name)
    start = args.backbone
    if args.from_model:
        starts = model_folders(args.from_model)
        start = starts[args.split_index % len(starts)]
        model = LTCModel.load(start)
        warn_if_seen(start, dataset, args.from_model)
        label = f"{Path(args.from_model).name}-finetuned"
        what = f"{start} (fine-tuning)"
    else:
        model = LTCModel.from_backbone(args.backbone, head_hidden=args.head_hidden, seed=args.seed)
        label, what = args.backbone, f"{args.backbone} + head {args.head_hidden}"
    replay = None
    if args.replay:
        source = args.replay
        if source == REPLAY_START:
            if not args.from_model:
                raise ValueError(
                    "--replay start replays what the --from-model model learnt from: add --from-model"
                )
            source = start_replay([start], args.from_model, args.label_key)
        replay = load_labelled(args, source)
        warn_if_replayed(replay, dataset)
        what += f", replaying {replay.name} ({len(replay)} structures)"
    out = Path(args.out or f"runs/{dataset.name}-{label}-split{args.split_index}")
    args.epochs = args.epochs_override or 300
    print(
        f"training {what} on {dataset.name} ({len(dataset)} structures), "
        f"split {args.split_index}, {args.epochs} epochs → {out}",
        flush=True,
    )
    result = fit(
        model,
        dataset,
        split,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        min_lr_fraction=args.min_lr_fraction,
        loss=args.loss,
        seed=args.seed,
        keep=args.keep,
        monitor=args.monitor,
        descriptors=args.descriptors,
        replay=replay,
        out_dir=out,
        progress=not args.no_progress,
        accelerator=args.accelerator,
        devices=_devices(str(args.devices)),
        strategy=args.strategy,
        metadata={"recipe": None, "stage": None, "initialised_from": str(start)}
        if args.from_model
        else {"backbone": args.backbone, "recipe": None},
    )
    m = result.metrics
    print(
        f"\n{dataset.name}, split {m['split']['index']}: {m['split']['n_train']} train / "
        f"{m['split']['n_validation']} validation, kept epoch {m['best_epoch']} ({m['keep']}), "
        f"{m['wall_time_s']:.0f} s"
    )
    print(format_metrics(m["validation"]))
    print(f"model, metrics.json and curve.csv written to {out}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from .plugins import (
        available_backbones,
        available_datasets,
        available_pretrained_models,
        available_recipes,
    )

    sections = {
        "models": available_pretrained_models(),
        "backbones": available_backbones(),
        "recipes": available_recipes(),
        "datasets": available_datasets(),
    }
    if args.json:
        print(
            json.dumps({k: {n: s.description for n, s in v.items()} for k, v in sections.items()}, indent=1)
        )
        return 0
    width = max(len(name) for table in sections.values() for name in table)
    for title, table in sections.items():
        print(f"{title}:")
        for name, spec in table.items():
            print(f"  {name:<{width}}  {spec.description}")
    return 0


def _domain_note(row: dict[str, Any]) -> str:
    """Where a prediction leaves what the model learnt from: unseen elements, and descriptors
    outside the training range (the first three named)."""
    from .screening import first_names

    notes = []
    if row["out_of_domain"]:
        notes.append(f"elements unseen in training: {row['unseen_elements']}")
    if row.get("extrapolated"):
        notes.append(f"outside the training range: {first_names(row['extrapolated'])}")
    return "; ".join(notes)


def cmd_predict(args: argparse.Namespace) -> int:
    from .model import LTCEnsemble, load_model
    from .screening import predict_rows

    model = load_model(args.model)
    ensemble = model if isinstance(model, LTCEnsemble) else LTCEnsemble([model])
    files = list(args.files)
    if args.examples or not files:
        from importlib import resources

        folder = Path(str(resources.files("matgl_ltc") / "examples"))
        files += sorted(str(p) for p in folder.glob("*.cif"))
    name = ensemble.metadata.get("name") or args.model or "default"
    estimate = args.estimate or ensemble.default_estimate
    boosted = (
        f" blended with {ensemble.boosting_weight:g} of its descriptor boosters" if ensemble.boosters else ""
    )
    print(
        f"κ_L at 300 K with {name} ({len(ensemble)} model(s)), {estimate} of the members{boosted}; "
        "± σ is the calibrated ensemble spread"
    )
    status = 0
    print(f"{'id':<28} {'formula':<14} {'κ_L (W/m/K)':>12} {'± σ':>9}  note")
    for row in predict_rows(files, ensemble):
        if row["error"]:
            print(f"{row['id']:<28} error: {row['error']}", file=sys.stderr, flush=True)
            status = 1
            continue
        note = _domain_note(row)
        kappa = row[f"ltc_{estimate}"]
        print(
            f"{row['id']:<28} {row['formula']:<14} {kappa:>12.4g} {row['ltc_std']:>9.3g}  {note}", flush=True
        )
    return status


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .analysis.evaluate import evaluate
    from .model import load_model

    result = evaluate(load_model(args.model), load_labelled(args, args.dataset), estimate=args.estimate)
    print(
        f"{args.model} on {result['dataset']} ({result['n_structures']} structures, {result['n_members']} model(s))"
    )
    print(format_metrics({k: v["mean"] for k, v in result["members_mean"].items()}, "mean over models"))
    print(format_metrics(result["ensemble_mean"], "ensemble mean prediction"))
    ensemble = dict(result["ensemble"])
    estimate = ensemble.pop("estimate")
    if "boosting" in result:
        print(format_metrics(result["boosting"], "descriptor boosters alone"))
        print(
            format_metrics(
                ensemble, f"ensemble {estimate} prediction with {result['boosting_weight']:g} boosters"
            )
        )
    elif estimate != "mean":
        print(format_metrics(ensemble, f"ensemble {estimate} prediction"))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


def cmd_package(args: argparse.Namespace) -> int:
    from .train import package_run

    ensemble = package_run(args.run, args.out, args.name, args.dataset, args.description)
    print(
        f"wrote {args.out}: {len(ensemble)} models, σ recalibrated ×{ensemble.sigma_scale:.3f} on held-out "
        f"residuals; model card {Path(args.out) / 'README.md'}; load it with matgl_ltc.load_model({args.out!r})"
    )
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from .train.reproduce import REPRODUCE_RECIPES, reproduce

    reproduce(
        args.out,
        recipes=args.recipes or REPRODUCE_RECIPES,
        datasets=args.datasets,
        n_splits=args.n_splits,
        epochs=args.epochs,
        paper=args.paper,
        progress=not args.no_progress,
        **_trainer_options(args),
    )
    print((Path(args.out) / "reproduce.md").read_text())
    return 0


def cmd_scan(args: argparse.Namespace) -> int:
    from .screening import scan

    summary = scan(
        args.inputs,
        args.output,
        args.model,
        batch_size=args.batch_size,
        chunk_size=args.chunk_size,
        resume=not args.restart,
        progress=not args.no_progress,
        accelerator=args.accelerator,
        devices=_devices(args.devices),
        strategy=args.strategy,
        num_nodes=args.num_nodes,
    )
    if summary.rank != 0:  # another process of a distributed scan: rank 0 reports
        return 0
    for sid, reason in summary.bad[:20]:
        print(f"bad structure {sid}: {reason}", file=sys.stderr)
    if len(summary.bad) > 20:
        print(
            f"... and {len(summary.bad) - 20} more bad structures (rows with 'error' in the output)",
            file=sys.stderr,
        )
    print(summary.line())
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from .analysis.screening_report import analyze

    report = analyze(args.scans, args.out, training_sets=args.training_sets, top=args.top)
    print(f"{report['n_structures']} structures analysed; tables and figures in {args.out}:")
    for name in (
        "analysis.md",
        "correlations_mTC.csv",
        "correlations_var_pTC.csv",
        "lowest_ltc_candidates.csv",
        *report["figures"],
    ):
        print(f"  {name}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="matgl-ltc",
        description="Lattice thermal conductivity (κ_L, 300 K) with transfer-learned MEGNet models.",
    )
    parser.add_argument("--version", action="version", version=f"matgl-ltc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser(
        "train",
        help="train a model on one split, or a recipe over all splits",
        description="Train one model on one split, or with --recipe a transfer-learning recipe over "
        "all splits. With --recipe, --epochs, --batch-size, --lr, --min-lr-fraction, --loss, --keep, "
        "--monitor, --head-hidden, --seed and --descriptors override that setting in every stage; "
        "for one stage only, write a recipe file (docs/recipes.md).",
    )
    train.add_argument(
        "--dataset",
        required=True,
        help="bundled name (togo15, hh143, mix, aflow_agl) or path; A+B reads both as one set",
    )
    train.add_argument(
        "--backbone", default=None, help="megnet-eform (default), megnet-random, ... (one model only)"
    )
    train.add_argument(
        "--from-model",
        metavar="NAME|PATH",
        help="fine-tune a shipped or saved model instead of a fresh backbone (one model only; of an "
        "ensemble or run of n models, model k mod n for --split-index k; in a recipe: init = 'model:...')",
    )
    train.add_argument(
        "--replay",
        metavar="DATASET",
        help="also train on every structure of this labelled set in every epoch, so that fine-tuning "
        "keeps what the model knew: 'start' for the set the --from-model model learnt from (togo15 "
        "for LTC-MEGNet-Togo15-hybrid), or a name or path (one model only; in a recipe: "
        "replay = 'start|NAME|PATH')",
    )
    train.add_argument("--split-file", help='JSON {"train": [ids], "validation": [ids]} or a list of them')
    train.add_argument(
        "--split-index",
        type=int,
        default=None,
        help="which of the 9 seeded splits (default 0; one model only)",
    )
    train.add_argument(
        "--recipe",
        help="run a recipe over all splits: "
        + ", ".join(r.name for r in builtin_recipes())
        + " or a .toml/.yaml file (without it: one model, one split)",
    )
    train.add_argument("--n-splits", type=int, default=9, help="splits for --recipe (default 9)")
    train.add_argument(
        "--stage-cache", help="folder of shared non-target stages (AFLOW models), for --recipe"
    )
    train.add_argument(
        "--paper", action="store_true", help="with --recipe: the paper's settings in every stage"
    )
    train.add_argument(
        "--members",
        type=int,
        default=None,
        help="with --recipe: train the last stage this many times per split (seeds seed, seed+1, ...) "
        "and score each split on their combined prediction",
    )
    train.add_argument(
        "--estimate",
        choices=ESTIMATES,
        default=None,
        help="with --members: how the members' predictions are combined (default: the recipe's)",
    )
    train.add_argument(
        "--reseed",
        choices=RESEED,
        default=None,
        help="with --members: re-seed only the last stage (its earlier models shared) or all stages "
        "(each member fine-tunes from its own AFLOW models; default: the recipe's)",
    )
    train.add_argument(
        "--rotate",
        action="store_true",
        help="with --members: member i of split k fine-tunes from the AFLOW model of split k + i, so "
        "the members start from different AFLOW models at no extra AFLOW cost",
    )
    train.add_argument(
        "--boosting-weight",
        type=float,
        default=None,
        help="with --recipe: also fit gradient-boosted trees on the descriptors per split and give "
        "them this share (0-1) of the log-space estimate (default: the recipe's)",
    )
    train.add_argument(
        "--boosting-low-fidelity",
        default=None,
        metavar="DATASET",
        help="with a booster: a dataset the trees also learn from, with the fidelity as an input "
        "(aflow_agl; '' for none; default: the recipe's)",
    )
    train.add_argument(
        "--epochs",
        dest="epochs_override",
        type=int,
        default=None,
        help="epochs (default 300)",
    )
    train.add_argument("--batch-size", type=int, default=None, help="default 8")
    train.add_argument("--lr", type=float, default=None, help="default 1e-3")
    train.add_argument(
        "--min-lr-fraction", type=float, default=None, help="cosine annealing floor, × lr (default 0.01)"
    )
    train.add_argument("--loss", default=None, choices=["mape", "log_mse", "log_l1"], help="default mape")
    train.add_argument("--keep", default=None, choices=["best", "last"], help="kept epoch (default best)")
    train.add_argument(
        "--monitor",
        default=None,
        choices=METRIC_NAMES,
        help="validation metric --keep best picks by (default mape)",
    )
    train.add_argument(
        "--head-hidden", type=_ints, default=None, help="head layer widths (default 450,350,350)"
    )
    train.add_argument(
        "--seed",
        type=int,
        default=None,
        help="default 42; with --recipe, every stage's (a new draw of the whole recipe; members "
        "take seed, seed+1, ...)",
    )
    train.add_argument(
        "--descriptors",
        action="store_true",
        default=None,
        help="hybrid head: composition/structure descriptors beside the MEGNet embedding",
    )
    train.add_argument(
        "--out", help="output folder (default runs/<dataset>-<backbone>-split<k> or runs/<recipe>-<dataset>)"
    )
    _add_trainer_options(train)
    add_label_options(train)
    train.set_defaults(func=cmd_train)

    models = sub.add_parser("models", help="list backbones, datasets and models (built-in and plugins)")
    models.add_argument("--json", action="store_true")
    models.set_defaults(func=cmd_models)

    predict = sub.add_parser("predict", help="predict κ_L for structure files")
    predict.add_argument("files", nargs="*", help="CIF, POSCAR, extxyz, ... (anything ase.io.read takes)")
    predict.add_argument(
        "--examples", action="store_true", help="also the bundled example crystals (the default)"
    )
    predict.add_argument("--model", help="model name or folder (default: the shipped default ensemble)")
    predict.add_argument(
        "--estimate",
        choices=ESTIMATES,
        default=None,
        help="mean (the paper's mTC), geometric (the members' geometric mean) or min_mape (leans low "
        "where members disagree: the least expected percentage error); default: the estimate the "
        "model's recipe was scored with, else mean",
    )
    predict.set_defaults(func=cmd_predict)

    evaluate = sub.add_parser("evaluate", help="score a model, ensemble or run on a labelled dataset")
    evaluate.add_argument("model", help="model name, model/ensemble folder or recipe run folder")
    evaluate.add_argument("--dataset", required=True, help="a registered name or a path; A+B for both")
    evaluate.add_argument("--out", help="write the full result as JSON")
    evaluate.add_argument(
        "--estimate",
        choices=ESTIMATES,
        default=None,
        help="also score this point estimate of the members (default: the model's own)",
    )
    add_label_options(evaluate)
    evaluate.set_defaults(func=cmd_evaluate)

    package = sub.add_parser(
        "package",
        help="a recipe run as a shareable ensemble: calibrated σ and a model card",
        description="Save a finished recipe run's models as an ensemble folder with σ recalibrated on "
        "held-out residuals and a model card (README.md); load_model, predict, scan and a plugin's "
        "PretrainedSpec take it like a shipped model.",
    )
    package.add_argument("run", help="a finished recipe run folder")
    package.add_argument("-o", "--out", required=True, help="the ensemble folder to write")
    package.add_argument("--name", required=True, help="the model's name")
    package.add_argument("--description", default="", help="one line for matgl-ltc models and the card")
    package.add_argument(
        "--dataset",
        default=None,
        help="the run's target set (default: the file or registered set it was trained on)",
    )
    package.set_defaults(func=cmd_package)

    repro = sub.add_parser("reproduce", help="the paper's table: recipes × datasets over 9 splits")
    repro.add_argument("--out", default="runs/reproduce")
    repro.add_argument(
        "--recipes",
        nargs="+",
        help="default: the paper's steps 1-3 (scratch, pretrained, two-stage), its control "
        "(aflow-only) and the two-stage-hybrid family",
    )
    repro.add_argument("--datasets", nargs="+", default=["togo15", "hh143", "mix"])
    repro.add_argument("--n-splits", type=int, default=9)
    repro.add_argument("--epochs", type=int, default=None, help="override every stage's epochs (smoke tests)")
    repro.add_argument("--paper", action="store_true", help="the paper's settings in every stage")
    _add_trainer_options(repro)
    repro.set_defaults(func=cmd_reproduce)

    scan = sub.add_parser("scan", help="screen structure files or databases with an ensemble (resumable)")
    scan.add_argument(
        "inputs", nargs="+", help="extxyz files, CIF folders, ase.db files or postgresql:// URLs"
    )
    scan.add_argument("-o", "--output", required=True, help="result file: .csv, .parquet or .db (ase.db)")
    scan.add_argument("--model", help="model name or folder (default: the shipped default ensemble)")
    scan.add_argument(
        "--batch-size",
        type=int,
        default=64,
        help="most structures per forward pass (a batch also stops at 16k edges)",
    )
    scan.add_argument("--chunk-size", type=int, default=512, help="structures per write (the resume unit)")
    scan.add_argument("--restart", action="store_true", help="discard an existing output instead of resuming")
    scan.add_argument("--no-progress", action="store_true")
    distributed = scan.add_argument_group(
        "several processes, GPUs or nodes (through Lightning; any of these switches it on)"
    )
    distributed.add_argument("--accelerator", help="cpu, gpu, auto ...")
    distributed.add_argument("--devices", help="number or comma-separated list of devices (CPU: processes)")
    distributed.add_argument("--strategy", help="default ddp")
    distributed.add_argument("--num-nodes", type=int, default=1)
    scan.set_defaults(func=cmd_scan)

    analyze = sub.add_parser("analyze", help="correlation tables, figures and candidates from scan outputs")
    analyze.add_argument("scans", nargs="+", help="scan outputs (.csv, .parquet, .db)")
    analyze.add_argument("-o", "--out", required=True, help="output folder")
    analyze.add_argument("--training-sets", nargs="*", default=["togo15", "hh143", "aflow_agl"])
    analyze.add_argument("--top", type=int, default=50, help="number of lowest-κ candidates listed")
    analyze.set_defaults(func=cmd_analyze)
    return parser


def _resume_hint(args: argparse.Namespace) -> str:
    """What an interrupted command kept, for the commands that resume."""
    if args.command == "scan":
        return "; the structures scanned so far are saved, and the same command resumes"
    if args.command == "reproduce" or (args.command == "train" and getattr(args, "recipe", None)):
        return "; finished stages are kept, and the same command resumes"
    return ""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # warnings read as the command's own messages, not as Python source lines
    formatwarning = warnings.formatwarning
    warnings.formatwarning = lambda message, category, *_: (
        f"matgl-ltc {args.command}: {category.__name__}: {message}\n"
    )
    try:
        return int(args.func(args) or 0)
    except (ValueError, KeyError, FileNotFoundError, RuntimeError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"matgl-ltc {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C is a user's choice, not a crash: no traceback
        print(f"\nmatgl-ltc {args.command}: interrupted{_resume_hint(args)}", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = formatwarning


if __name__ == "__main__":
    raise SystemExit(main())
