"""Net1D against the official implementation's golden outputs, strict loading, export-friendliness."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from anyppg_edge.errors import CheckpointError, InvalidSignalError, MissingFileError
from anyppg_edge.models import Net1D, count_params, create_model, get_model_spec, list_models, model_stats
from anyppg_edge.models.checkpoint import load_state_dict, read_state_dict

# Tolerances of this file, in one place: Net1D float32 vs the official outputs (float32 rounding).
TOLERANCES = {"golden_max_abs": 1e-5}

CONFIGS = {"tiny": "tiny", "anyppg-released": "anyppg_released", "anyppg-paper": "anyppg_paper"}
LENGTHS = (1250, 1000, 500, 333)


def _golden(shared, name):
    key = CONFIGS[name]
    ref = shared / "reference"
    return ref / f"net1d_{key}.state_dict.pt", np.load(ref / f"net1d_{key}_io.npz")


@pytest.fixture(scope="module")
def reference_json(shared):
    return json.loads((shared / "reference" / "net1d_reference.json").read_text())


def test_registry_lists_the_three_reference_configs():
    assert {"tiny", "anyppg-released", "anyppg-paper"} <= set(list_models())
    with pytest.raises(KeyError, match="registered"):
        get_model_spec("no-such-model")


def test_derived_names_resolve_in_a_fresh_process():
    """``<model>-k<N>`` / ``<model>-do<p>`` change only what they name, and resolve without prior
    registration, so a checkpoint recording a derived name loads in any process."""
    code = (
        "from anyppg_edge.models import create_model, get_model_spec, count_params\n"
        "s = get_model_spec('tiny-k5-do0.1'); b = get_model_spec('tiny')\n"
        "assert s.net1d.kernel_size == 5 and s.net1d.dropout_p == 0.1, s\n"
        "assert b.net1d.dropout_p == 0.5 and b.net1d.kernel_size != 5\n"
        "d = get_model_spec('tiny-do0')\n"
        "assert d.net1d.dropout_p == 0.0 and d.expected_params == b.expected_params\n"
        "assert count_params(create_model('tiny-do0')) == count_params(create_model('tiny'))\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
    from anyppg_edge.models import derived_model_name

    assert derived_model_name("tiny") == "tiny"
    assert derived_model_name("tiny", kernel_size=7, dropout_p=0.2) == "tiny-k7-do0.2"
    with pytest.raises(ValueError, match=r"dropout_p must be in \[0, 1\)"):
        derived_model_name("tiny", dropout_p=1.0)
    for bad in ("tiny-do1.5", "tiny-k0", "nope-k5", "tiny-x5"):
        with pytest.raises(KeyError, match="unknown model"):
            get_model_spec(bad)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_config_and_param_count_match_official(name, reference_json):
    ref = reference_json[CONFIGS[name]]
    spec = get_model_spec(name)
    assert spec.net1d.to_dict() | {} == {**spec.net1d.to_dict(), **ref["config"]}
    model = Net1D(spec.net1d)
    assert count_params(model) == ref["n_params"]
    assert len(model.state_dict()) == ref["state_dict_keys"]
    assert model.out_dim == ref["out_dim"]


def test_param_counts_are_the_published_numbers():
    assert count_params(create_model("anyppg-released")) == 4_044_272
    assert count_params(create_model("anyppg-paper")) == 5_850_864


@pytest.mark.parametrize("static", [False, True], ids=["dynamic-pad", "static-pad"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_golden_outputs_all_lengths(shared, name, static):
    ckpt, io = _golden(shared, name)
    model = create_model(name, checkpoint=ckpt).eval()
    for length in LENGTHS:
        x = torch.from_numpy(io[f"x_{length}"])
        assert x.shape[1:] == (1, length)
        if static:
            model.set_static_length(length)
        with torch.no_grad():
            y = model(x).numpy()
        err = float(np.abs(y - io[f"y_{length}"]).max())
        assert err <= TOLERANCES["golden_max_abs"], f"{name} L={length}: max abs {err:.3g}"
    model.set_static_length(None)


def test_strict_loading_rejects_wrong_key_sets(shared, tmp_path):
    ckpt, _ = _golden(shared, "tiny")
    state = read_state_dict(ckpt)
    model = create_model("tiny")
    missing = dict(state)
    missing.pop("stage_list.0.block_list.0.se_fc1.weight")
    with pytest.raises(CheckpointError, match="1 missing keys"):
        load_state_dict(model, missing)
    extra = dict(state, **{"dense.weight": torch.zeros(2, 64)})
    with pytest.raises(CheckpointError, match="1 unexpected keys"):
        load_state_dict(model, extra)
    # the 512-d released checkpoint does not fit the 1024-d paper layout
    with pytest.raises(CheckpointError, match="shape mismatch"):
        create_model("anyppg-paper", checkpoint=shared / "reference" / "net1d_anyppg_released.state_dict.pt")


def test_truncated_and_missing_checkpoints_are_clear_errors(shared, tmp_path):
    ckpt, _ = _golden(shared, "tiny")
    data = ckpt.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        create_model("tiny", checkpoint=truncated)
    with pytest.raises(MissingFileError, match="not found"):
        create_model("tiny", checkpoint=tmp_path / "absent.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        create_model("tiny", checkpoint=garbage)


def test_checkpoint_with_wrapper_and_prefix(shared, tmp_path):
    ckpt, io = _golden(shared, "tiny")
    state = read_state_dict(ckpt)
    wrapped = tmp_path / "wrapped.pt"
    torch.save({"state_dict": {f"ppg_encoder.{k}": v for k, v in state.items()}}, wrapped)
    model = create_model("tiny")
    load_state_dict(model, wrapped, prefix="ppg_encoder.")
    with torch.no_grad():
        y = model.eval()(torch.from_numpy(io["x_1250"])).numpy()
    assert np.abs(y - io["y_1250"]).max() <= TOLERANCES["golden_max_abs"]


def test_bad_inputs_are_clear_errors():
    model = create_model("tiny").eval()
    with pytest.raises(InvalidSignalError, match="shape"):
        model(torch.zeros(1, 1250))
    with pytest.raises(InvalidSignalError, match="shape"):
        model(torch.zeros(1, 2, 1250))
    with pytest.raises(InvalidSignalError, match="floating-point"):
        model(torch.zeros(1, 1, 1250, dtype=torch.int32))
    with pytest.raises(InvalidSignalError, match=r"torch\.Tensor"):
        model(np.zeros((1, 1, 1250), dtype=np.float32))
    model.set_static_length(1250)
    with pytest.raises(InvalidSignalError, match="frozen for 1250"):
        model(torch.zeros(1, 1, 1000))


def test_stats_of_teacher_configs():
    stats = model_stats(create_model("anyppg-released"), 1250)
    assert stats.params == 4_044_272
    # ~109 M MACs per 10 s window (conv + linear multiply-accumulates)
    assert 100e6 < stats.macs < 120e6
    # the largest live set is in stage 0 at 625 samples: at least input+output of a 64-channel conv
    assert stats.peak_activation_elements >= 2 * 64 * 625
    assert stats.peak_activation_bytes(4) == 4 * stats.peak_activation_elements
    tiny = model_stats(create_model("tiny"), 1250)
    assert tiny.macs < stats.macs / 20 and tiny.params == 25_784


def test_static_graph_export_has_no_shape_arithmetic(tmp_path):
    model = create_model("tiny").eval().set_static_length(1250)
    x = torch.randn(1, 1, 1250)
    ep = torch.export.export(model, (x,))
    targets = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert not any("sym_size" in t or "einsum" in t for t in targets), targets
    onnx = pytest.importorskip("onnx")
    path = tmp_path / "tiny.onnx"
    pytest.importorskip("onnxscript")
    torch.onnx.export(
        model, (x,), str(path), dynamo=True, external_data=False, input_names=["ppg"], output_names=["embedding"]
    )
    graph = onnx.load(str(path)).graph
    ops = [n.op_type for n in graph.node]
    assert not set(ops) & {"Shape", "Gather", "ConstantOfShape", "Einsum", "Transpose"}, ops
    # 1 first conv + 4 k-convs + 4 identity max-pools need padding in the tiny config; some fold into Conv
    assert 0 < ops.count("Pad") <= 9
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(str(path), disabled_optimizers=["Pad_Fusion"], providers=["CPUExecutionProvider"])
    y_ort = sess.run(None, {"ppg": x.numpy()})[0]
    with torch.no_grad():
        y = model(x).numpy()
    assert np.abs(y_ort - y).max() < 1e-5


def test_package_import_is_light():
    code = (
        "import sys, anyppg_edge, anyppg_edge.preprocessing;"
        "heavy = [m for m in ('torch', 'tensorflow', 'brevitas', 'onnxruntime', 'neurokit2') if m in sys.modules];"
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("name", ["tiny", "small", "small-k15", "student-watch", "student-watch-k9", "anyppg-released"])
def test_conv_receptive_field_matches_the_measured_gradient_support(name):
    """The formula equals the input span that one last-stage position depends on, measured by the
    gradient with the SE gates made input-independent (se_fc2 zeroed: a constant 0.5 gain)."""
    from anyppg_edge.models import conv_receptive_field_samples, create_model, get_model_spec

    torch.manual_seed(0)
    model = create_model(name).eval()
    for m in model.modules():
        if hasattr(m, "se_fc2"):
            torch.nn.init.zeros_(m.se_fc2.weight)
            torch.nn.init.zeros_(m.se_fc2.bias)
    feats = {}
    model.stage_list[-1].register_forward_hook(lambda mod, i, o: feats.__setitem__("out", o))
    x = torch.randn(1, 1, 8192, dtype=torch.float64, requires_grad=True)
    model.double()(x)
    out = feats["out"]
    out[0, :, out.shape[-1] // 2].sum().backward()
    support = torch.nonzero(x.grad[0, 0]).flatten()
    measured = int(support.max() - support.min() + 1)
    assert measured == conv_receptive_field_samples(get_model_spec(name).net1d)
