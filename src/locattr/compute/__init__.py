"""Compute: load SPD runs and compute local attribution graphs (pure torch; no SQL, no storage).

Entry points: `load_run(path_or_wandb, device="cpu")` and
`compute_graph(run, token_ids, *, ci_threshold=1e-6, attr_threshold=1e-4)`.
"""

from locattr.compute.activation_contexts import ComponentContexts, activation_contexts
from locattr.compute.attribution import AttributionMode, compute_graph, compute_graphs
from locattr.compute.errors import LocattrComputeError
from locattr.compute.run_loading import LoadedRun, load_run
from locattr.compute.structure import LayerPair, Structure, discover_structure

__all__ = [
    "AttributionMode",
    "ComponentContexts",
    "activation_contexts",
    "LayerPair",
    "LoadedRun",
    "LocattrComputeError",
    "Structure",
    "compute_graph",
    "compute_graphs",
    "discover_structure",
    "load_run",
]
