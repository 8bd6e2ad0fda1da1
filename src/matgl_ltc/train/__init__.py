"""Training: the Lightning module, ``fit`` for one model on one split, recipes and their runner."""

from .fit import PAPER_DEFAULTS, FitResult, TrainingDivergedError, fit, resolve_split
from .lightning_module import LOSSES, LTCLightningModule
from .packaging import package_run
from .recipes import Recipe, Stage, builtin_recipes, resolve_recipe
from .runner import RecipeRunner, RunResult, run_models, run_recipe, summarize

__all__ = [
    "LOSSES",
    "PAPER_DEFAULTS",
    "FitResult",
    "LTCLightningModule",
    "Recipe",
    "RecipeRunner",
    "RunResult",
    "Stage",
    "TrainingDivergedError",
    "builtin_recipes",
    "fit",
    "package_run",
    "resolve_recipe",
    "resolve_split",
    "run_models",
    "run_recipe",
    "summarize",
]
