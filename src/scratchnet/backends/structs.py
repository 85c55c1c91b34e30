"""The named structures the network kernels take, the same in every backend.

A kernel takes a few of these instead of a long list of same-typed arrays,
so two arguments cannot be swapped silently. In Numba they are namedtuples
(typed as heterogeneous tuples), in C the structs of kernels/scratchnet.h
with the same field names in the same order.

Argument order, the same for every kernel in every backend: outputs first,
then inputs (as llm.c's ``op_forward(out, inp, ...)``).

Shapes: N samples, D inputs, H hidden units, K classes, NNZ non-zero inputs.
"""

from collections import namedtuple

# Rows of a data set, sparse: row n holds cols[row_ptr[n]:row_ptr[n + 1]]
# (ascending) with values vals[...]; the zeros are left out. float64 values,
# int32 column indices; D is the number of columns.
SparseRows = namedtuple("SparseRows", "n d row_ptr cols vals")

# One batch of inputs x (N, D), as sparse rows (CSR: row_ptr (N + 1,), cols
# (NNZ,) int32 ascending within a row, vals (NNZ,) float64) and as sparse
# columns (CSC: col_ptr (D + 1,), rows (NNZ,) int32 ascending within a
# column, col_vals (NNZ,) float64); xmax = max |x| (0 for an all-zero batch).
Batch = namedtuple("Batch", "n d xmax row_ptr cols vals col_ptr rows col_vals")

# TwoLayerNet's parameters: W1 (D, H), b1 (H,), W2 (H, K), b2 (K,), float64, C-contiguous.
Params = namedtuple("Params", "W1 b1 W2 b2")

# Gradients, the shapes of Params.
Grads = namedtuple("Grads", "W1 b1 W2 b2")

# The forward pass of a batch: a1 = x W1 + b1 (N, H); z = sigmoid(a1) and
# zq = sigmoid(-a1) = 1 - z (N, H), each to full relative precision; a2 = z
# W2 + b2 (N, K) logits; e = exp(a2 - max_k a2) (N, K), s = sum_k e (N,);
# y = e / s (N, K) the softmax probabilities.
Forward = namedtuple("Forward", "a1 z zq a2 e s y")

# Workspaces of the C kernels, allocated by backends/c.py (the Numba and
# NumPy backends allocate theirs inside the kernel).
BackpropWork = namedtuple("BackpropWork", "da2 da1")  # (N, K), (N, H)
# C (5, N, H), L (5, N, K) the series coefficients; W2T (K, H); [0] the
# largest real step and [1] the largest |h+ - h-|, per chunk and column of W1
# (CHUNKS, 2, H), per entry of W2 (2, H, K), b1 (2, H), b2 (2, K); units (H,),
# logits (K,) uint8: 1 where the bound rejected the series.
SeriesWork = namedtuple("SeriesWork", "C L W2T steps_w1 steps_w2 steps_b1 steps_b2 units logits")
# Per sample's distinct pixel values: slot (NNZ,) int64; value (N, D); m_plus,
# m_minus (N, DPAD) with DPAD = D rounded up to 8; ndist (N,) int64; xmax (N,).
PerturbedWork = namedtuple("PerturbedWork", "slot value m_plus m_minus ndist xmax")
