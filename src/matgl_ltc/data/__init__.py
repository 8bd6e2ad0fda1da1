"""Datasets, validation, the target transform, splits and graph conversion."""

from .datasets import BUNDLED_DATASETS, LTCDataset, bundled_path, dataset_card, load_dataset
from .graphs import GraphCache, atoms_to_graph, collate_graphs
from .readers import StructureRecord, iter_structures, to_atoms
from .splits import Split, load_splits, random_splits, save_splits
from .transform import LogStandardScaler
from .validation import (
    MEGNET_ELEMENTS,
    DatasetValidationError,
    InvalidLabelError,
    InvalidStructureError,
    check_label,
    count_edges,
    validate_atoms,
)

__all__ = [
    "BUNDLED_DATASETS",
    "MEGNET_ELEMENTS",
    "DatasetValidationError",
    "GraphCache",
    "InvalidLabelError",
    "InvalidStructureError",
    "LTCDataset",
    "LogStandardScaler",
    "Split",
    "StructureRecord",
    "atoms_to_graph",
    "bundled_path",
    "check_label",
    "collate_graphs",
    "count_edges",
    "dataset_card",
    "iter_structures",
    "load_dataset",
    "load_splits",
    "random_splits",
    "save_splits",
    "to_atoms",
    "validate_atoms",
]
