"""The input contract an exported encoder carries: what a window must look like before it is fed.

A TFLite or ONNX file leaves the toolkit with the whole preprocessing configuration it was trained
on (sample rate, window length, filter spec, normalisation, its hash), its I/O quantization and the
identity of the weights it was made from. Every runtime that loads an artifact compares this
contract with the :class:`~anyppg_edge.preprocessing.PreprocessConfig` it is about to use and
refuses a mismatch (:class:`~anyppg_edge.errors.ContractMismatchError`) instead of producing
plausible-looking garbage embeddings.

Pure Python (json + dataclasses): readable on a Raspberry Pi or a phone without torch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from anyppg_edge import __version__
from anyppg_edge.errors import ConfigError, ContractMismatchError
from anyppg_edge.preprocessing import DEFAULT_CONFIG, PreprocessConfig

CONTRACT_SCHEMA = "anyppg-edge/input-contract/v1"
# Key under which the contract JSON is stored (ONNX metadata_props key; TFLite associated file name).
# The source sha256 recorded for a seeded random init (no checkpoint file).
RANDOM_INIT = "random-init"
CONTRACT_KEY = "anyppg_edge.input_contract"
ARTIFACT_KINDS = ("pytorch-float", "onnx-float", "onnx-int8", "tflite-float", "tflite-int8")


@dataclass(frozen=True)
class QuantParams:
    """Affine int8 quantization of one tensor: ``real = scale * (q - zero_point)``."""

    scale: float
    zero_point: int
    dtype: str = "int8"

    def quantize(self, x: Any) -> Any:
        import numpy as np

        info = np.iinfo(np.dtype(self.dtype))
        q = np.round(np.asarray(x, np.float64) / self.scale) + self.zero_point
        return np.clip(q, info.min, info.max).astype(self.dtype)

    def dequantize(self, q: Any) -> Any:
        import numpy as np

        return ((np.asarray(q).astype(np.float64) - self.zero_point) * self.scale).astype(np.float32)


def sha256_file(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            h.update(chunk)
    return h.hexdigest()


def filter_spec(cfg: PreprocessConfig) -> str:
    lo, hi = cfg.ppg_band_hz
    return (
        f"PPG: Butterworth band-pass {lo:g}-{hi:g} Hz, order {cfg.ppg_filter_order}, ba form, zero-phase "
        f"(forward-backward, MNE reflect_limited padding) at the sensor's native rate; cast to float32; "
        f"polyphase resample (scipy.signal.resample_poly) to {cfg.target_sample_rate_hz} Hz (none when the sensor "
        f"samples at {cfg.target_sample_rate_hz} Hz: a native-rate input)"
    )


def normalization_spec(cfg: PreprocessConfig) -> str:
    return f"per-window z-score: (x - mean(x)) / (std(x) + {cfg.zscore_eps:g}), population std, float32"


@dataclass(frozen=True)
class InputContract:
    """Everything a runtime needs to feed an encoder correctly, and to know which encoder it is."""

    model_name: str
    artifact_kind: str
    embedding_dim: int
    preprocess: dict[str, Any]  # PreprocessConfig.to_dict()
    preprocess_config_hash: str
    source_checkpoint_sha256: str
    # [batch, channels, samples], NCW as in PyTorch; samples = the config's window
    input_shape: tuple[int, ...] = (1, 1, DEFAULT_CONFIG.window_samples)
    input_name: str = "ppg"
    output_name: str = "embedding"
    input_quant: QuantParams | None = None  # None: float input
    output_quant: QuantParams | None = None
    model_version: str = __version__
    filter: str = ""
    normalization: str = ""
    schema: str = CONTRACT_SCHEMA
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.artifact_kind not in ARTIFACT_KINDS:
            raise ConfigError(f"artifact_kind must be one of {ARTIFACT_KINDS}, got {self.artifact_kind!r}")
        object.__setattr__(self, "input_shape", tuple(int(v) for v in self.input_shape))

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def for_model(
        cls,
        model_name: str,
        artifact_kind: str,
        embedding_dim: int,
        source_checkpoint_sha256: str,
        cfg: PreprocessConfig = DEFAULT_CONFIG,
        **kwargs: Any,
    ) -> InputContract:
        return cls(
            model_name=model_name,
            artifact_kind=artifact_kind,
            embedding_dim=int(embedding_dim),
            preprocess=cfg.to_dict(),
            preprocess_config_hash=cfg.config_hash(),
            source_checkpoint_sha256=source_checkpoint_sha256,
            input_shape=(1, 1, cfg.window_samples),
            filter=filter_spec(cfg),
            normalization=normalization_spec(cfg),
            **kwargs,
        )

    # -- derived --------------------------------------------------------------------------------
    @property
    def sample_rate_hz(self) -> int:
        return int(self.preprocess["target_sample_rate_hz"])

    @property
    def window_s(self) -> float:
        return float(self.preprocess["window_s"])

    @property
    def window_samples(self) -> int:
        return int(self.input_shape[-1])

    @property
    def preprocess_config(self) -> PreprocessConfig:
        return PreprocessConfig.from_dict(self.preprocess)

    # -- (de)serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        d["sample_rate_hz"] = self.sample_rate_hz  # redundant, for humans reading the metadata
        d["window_s"] = self.window_s
        d["window_samples"] = self.window_samples
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputContract:
        d = dict(d)
        if d.get("schema") != CONTRACT_SCHEMA:
            raise ContractMismatchError(
                f"unknown input-contract schema {d.get('schema')!r}; this toolkit reads {CONTRACT_SCHEMA!r}"
            )
        for k in ("sample_rate_hz", "window_s", "window_samples"):
            d.pop(k, None)
        for k in ("input_quant", "output_quant"):
            if d.get(k) is not None:
                d[k] = QuantParams(**d[k])
        try:
            return cls(**d)
        except TypeError as e:
            raise ContractMismatchError(f"malformed input contract: {e}") from e

    @classmethod
    def from_json(cls, text: str | bytes) -> InputContract:
        try:
            d = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ContractMismatchError(f"input contract is not valid JSON: {e}") from e
        return cls.from_dict(d)

    # -- the check every runtime does -----------------------------------------------------------
    def mismatches(self, cfg: PreprocessConfig) -> list[str]:
        """Human-readable differences between this contract and ``cfg`` (empty when they match)."""
        out = []
        theirs = cfg.to_dict()
        for k in sorted(set(self.preprocess) | set(theirs)):
            a, b = self.preprocess.get(k, "<absent>"), theirs.get(k, "<absent>")
            if _norm(a) != _norm(b):
                out.append(f"{k}: artifact expects {a!r}, preprocessing config has {b!r}")
        if self.window_samples != cfg.window_samples:
            out.append(f"window: artifact input has {self.window_samples} samples, config gives {cfg.window_samples}")
        if not out and self.preprocess_config_hash != cfg.config_hash():
            out.append(
                f"preprocess_config_hash: artifact {self.preprocess_config_hash[:12]}…, config {cfg.config_hash()[:12]}…"
            )
        return out

    def check(self, cfg: PreprocessConfig = DEFAULT_CONFIG, what: str = "artifact") -> InputContract:
        """Raise :class:`ContractMismatchError` unless ``cfg`` produces the inputs this model expects."""
        bad = self.mismatches(cfg)
        if bad:
            raise ContractMismatchError(
                f"{what} ({self.model_name}, {self.artifact_kind}) was built for a different preprocessing "
                "chain than the one in use:\n  " + "\n  ".join(bad)
            )
        return self


def _norm(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v
