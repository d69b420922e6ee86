"""How close two floats that a framework computed must be: ``assert_allclose(a, b, **FLOAT32)``.

The same model on the same rows gives results that differ in their last bits with the batch
size, the CPU (SIMD width, FMA) and the thread count, each of which changes the order of a sum.
Near zero a last-bit difference is a large relative one (1.5e-8 absolute was 1e-4 relative for
a float32 logit on an AMD EPYC machine), so every comparison has an ``atol`` as well as an
``rtol``. The values are many rounding errors wide for outputs of order 1, as these tests' small
models give, and still far tighter than any real mistake (a wrong row, a wrong column, a cast
through float16) would be.

Where values are not computed by such arithmetic (integer labels, data passed through, a value
read back from a store), tests compare them exactly instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# float32: epsilon 1.2e-7; 1e-5 is ~80 units in the last place.
FLOAT32 = {"rtol": 1e-5, "atol": 1e-6}
# float64: epsilon 2.2e-16; still thousands of units in the last place.
FLOAT64 = {"rtol": 1e-9, "atol": 1e-12}
# float32 on a CUDA GPU against the CPU: other kernels, other reduction orders.
CUDA_FLOAT32 = {"rtol": 1e-4, "atol": 1e-5}


def tolerance(expected: Any) -> dict[str, float]:
    """FLOAT32 when ``expected`` is float32 (computed in single precision), else FLOAT64."""
    return FLOAT32 if np.asarray(expected).dtype == np.float32 else FLOAT64
