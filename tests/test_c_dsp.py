"""The generated C encoder's DSP path (issue 18 bar: SMLAD in the convolution inner loops, plain C
and the DSP path side by side, both bit-exact). ``-DANYPPG_USE_DSP`` selects the dual 16-bit
multiply-accumulate kernels (ACLE ``__smlad`` / ``__sxtb16`` where ``__ARM_FEATURE_DSP``, the same
operations in portable C elsewhere). On real windows of the watch student: host DSP build = host
plain build = TFLM; on emulated Cortex-M4 and M33, DSP embeddings = plain embeddings = TFLM, and
the DSP path retires fewer instructions. The boards need arm-none-eabi-gcc + newlib + qemu-system-arm:
skipped without them on a user's machine, a failure under CI=true."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("brevitas")
pytest.importorskip("tensorflow")
pytest.importorskip("tflite_micro")

from prerequisites import require as _need

from anyppg_edge.deploy import cortexm
from anyppg_edge.deploy.export.c_encoder import (
    CFLAGS,
    CEncoder,
    _run_cc,
    build_host_library,
    generate_c_encoder,
)
from anyppg_edge.deploy.runtime import open_encoder


@pytest.fixture(scope="module")
def generated(slim_int8, tmp_path_factory):
    out = tmp_path_factory.mktemp("c_dsp")
    return generate_c_encoder(slim_int8[1], out), out


@pytest.fixture(scope="module")
def windows(ieee_windows):
    return np.asarray(ieee_windows[:4], np.float32)


@pytest.fixture(scope="module")
def tflm(slim_int8, windows):
    return open_encoder(slim_int8[1], runtime="tflm").embed(windows)


def test_host_dsp_build_is_bit_identical_to_plain_and_tflm(generated, windows, tflm):
    cc = shutil.which(os.environ.get("CC", "gcc"))
    _need(cc is not None, "no C compiler (gcc) on PATH")
    report, out = generated
    assert report["dsp_scratch_bytes"] > 0
    plain = CEncoder(build_host_library(out, cc=cc)).embed(windows)
    lib = out / "libanyppg_dsp.so"
    _run_cc([cc, *CFLAGS, "-O2", "-fPIC", "-shared", "-DANYPPG_USE_DSP", str(out / "anyppg_model.c"),
             str(out / "anyppg_io.c"), "-o", str(lib)])
    dsp = CEncoder(lib, out).embed(windows)
    assert np.array_equal(plain, tflm) and np.array_equal(dsp, tflm)


@pytest.mark.parametrize("board", list(cortexm.BOARDS))
def test_board_dsp_path_is_bit_exact_and_retires_fewer_instructions(generated, windows, tflm, board, tmp_path):
    from anyppg_edge.deploy.export.c_cortexm import run_encoder_on_board

    _need(cortexm.toolchain_available(), f"Cortex-M toolchain missing: apt-get install {' '.join(cortexm.APT_PACKAGES)}")
    report, out = generated
    plain = run_encoder_on_board(out, windows, board, tmp_path / "plain")
    dsp = run_encoder_on_board(out, windows, board, tmp_path / "dsp", dsp=True)
    assert np.array_equal(dsp["embeddings_int8"], plain["embeddings_int8"])
    assert np.array_equal(plain["embeddings"], tflm) and np.array_equal(dsp["embeddings"], tflm)
    ip, idsp = plain["instructions"].mean(), dsp["instructions"].mean()
    print(f"\n{board}: plain {ip / 1e6:.2f} M instr/window ({ip / report['macs']:.2f}/MAC), "
          f"DSP {idsp / 1e6:.2f} M ({idsp / report['macs']:.2f}/MAC), {report['macs']:,} MACs")
    assert idsp < 0.7 * ip
