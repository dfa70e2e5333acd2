"""Models: one Net1D implementation, a registry of named configs, official-checkpoint loading."""

from anyppg_edge.models.net1d import (
    ModelStats,
    Net1D,
    Net1DConfig,
    conv_receptive_field_samples,
    count_params,
    model_stats,
    same_padding,
)
from anyppg_edge.models.registry import (
    ModelSpec,
    create_model,
    derived_model_name,
    get_model_spec,
    list_models,
    register_model,
)

__all__ = [
    "ModelSpec",
    "ModelStats",
    "Net1D",
    "Net1DConfig",
    "conv_receptive_field_samples",
    "count_params",
    "create_model",
    "derived_model_name",
    "get_model_spec",
    "list_models",
    "model_stats",
    "register_model",
    "same_padding",
]
