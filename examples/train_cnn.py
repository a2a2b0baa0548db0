"""Train a small CNN on a task's images with numpy, export it to ONNX, then ask cnnproof.

The trainer lives in the package (``cnnproof.training``, docs/trained-example.md); this script is
its command line, kept where the docs first showed it:

    python examples/train_cnn.py [--task TASK] [--out DIR] [--arch A] [--epochs E] [--seed S]
                                 [--weight-bits B] [--method M] [--timeout S]   (--help: all)

``cnnproof train TASK -o MODEL.onnx`` goes further: it trains until the prover says PROVED.
"""

import os

# The products are small and thin: one BLAS thread is faster than several, and on shared cores
# many times faster (set before numpy loads; the environment's own value wins).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
from cnnproof.training import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
