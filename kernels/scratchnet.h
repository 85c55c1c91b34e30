/* The kernel contract of scratchnet's compiled backend.
 *
 * One C function per kernel, outputs first, shapes in comments. Arrays are
 * C-contiguous, float64 unless noted, and already validated by the caller
 * (src/scratchnet/backends/c.py, then kernels/module.c): no checks here.
 *
 * Each kernel is the 1:1 twin of its Numba kernel in src/scratchnet/backends/
 * (numba_kernels.py, numba_network.py): same formulas, same order of
 * operations, so the two agree bit for bit.
 * Parallel loops (OpenMP, when built with it) give every iteration its own
 * outputs, and sums are combined serially in a fixed order, so results are
 * bitwise identical for any thread count.
 */
#ifndef SCRATCHNET_H
#define SCRATCHNET_H

#include <stdint.h>

/* Guard inside the log of cross_entropy_error, as in the chapter. */
#define SN_DELTA 1e-7
/* Samples per partial sum of a loss; fixed, so sums never depend on threads. */
#define SN_SUM_BLOCK 1024

/* activations.c */

/* out = 1 / (1 + exp(-x)), computed with exp(-|x|) only. out, x (m,) */
void sn_sigmoid(double *out, const double *x, int64_t m);

/* Row-wise softmax with the row max subtracted. out, x (n, k), k >= 1 */
void sn_softmax(double *out, const double *x, int64_t n, int64_t k);

/* losses.c */

/* -sum_i log(y[i, t[i]] + 1e-7) / n, summed in blocks of SN_SUM_BLOCK.
 * y (n, k), t (n,) labels in [0, k), n >= 1 */
double sn_cross_entropy_error(const double *y, const int64_t *t, int64_t n, int64_t k);

/* affine.c */

/* out = x W + b, summing only the non-zero entries of x, over i ascending,
 * then + b. out (n, m), x (n, d), W (d, m), b (m,); n, d, m >= 1.
 * Returns 0, or -1 if its workspace (2 d numbers per thread) cannot be allocated. */
int sn_affine(double *out, const double *x, const double *W, const double *b, int64_t n, int64_t d, int64_t m);

/* out = x^T dout, summing only the non-zero entries of x, over the samples
 * in ascending order. out (d, m), x (n, d), dout (n, m); n, d, m >= 1.
 * Returns 0, or -1 if its workspace (2 n numbers per thread) cannot be allocated. */
int sn_affine_weight_grad(double *out, const double *x, const double *dout, int64_t n, int64_t d, int64_t m);

/* numgrad.c */

/* Central-difference gradient of TwoLayerNet's loss for every parameter,
 * the twin of backends/numba_network.py: from the unperturbed forward pass,
 * recomputing only what each +-h step changes.
 * Outputs dW1 (d, hdim), db1 (hdim,), dW2 (hdim, k), db2 (k,).
 * x (n, d), t (n,) labels in [0, k), a1 (n, hdim) = x W1 + b1, W2 (hdim, k),
 * a2 (n, k) logits; h > 0; n, d, hdim, k >= 1.
 * Returns 0, or -1 if its workspace (about 5 n d doubles, plus a small table per thread) cannot be allocated. */
int sn_network_numerical_gradient(double *dW1, double *db1, double *dW2, double *db2, const double *x,
                                  const int64_t *t, const double *a1, const double *W2, const double *a2, double h,
                                  int64_t n, int64_t d, int64_t hdim, int64_t k);

#endif /* SCRATCHNET_H */
