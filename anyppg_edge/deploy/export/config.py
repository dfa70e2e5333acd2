"""What ``export all`` does, as a plain dataclass (no torch import: the CLI builds its options from it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from anyppg_edge.preprocessing import DEFAULT_CONFIG, PreprocessConfig

__all__ = ["ExportConfig"]


@dataclass
class ExportConfig:
    out_dir: Path = Path("runs/export")
    qat_steps: int = 100
    qat_batch_size: int = 32
    qat_lr: float = 2e-5
    calib_batch_size: int = 16
    onnx_activation_type: str = "s8"
    # MinMax is hurt by rare extreme activations: on the released golden weights, real windows,
    # percentile (99.999 %) gives cosine 0.998 vs 0.990 for MinMax (measured: docs/export.md; reproduce with `export all --onnx-calibrate-method minmax`).
    onnx_calibrate_method: str = "percentile"
    int8_io: bool = False  # int8 input/output tensors in the int8 TFLite (else float I/O)
    layer_windows: int = 8  # windows for the per-layer table
    export_ptq_tflite: bool = True  # also write the PTQ model's TFLite, for the QAT-vs-PTQ comparison
    ablation: bool = False  # measure the Swish/sigmoid/SE alternatives (anyppg_edge.deploy.export.ablation)
    seed: int = 0
    progress: bool = True
    plot: bool = True
    preprocess: PreprocessConfig = field(default_factory=lambda: DEFAULT_CONFIG)
