"""``python -m firmware_harness``: the checkout's entry point for ``anyppg-edge harness`` (:mod:`anyppg_edge.cli.harness`)."""

import os

# one thread for BLAS/OpenMP/TFLite unless the caller says otherwise (before numpy is imported)
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
    os.environ.setdefault(_var, "1")

from anyppg_edge.cli.harness import main  # noqa: E402

raise SystemExit(main())
