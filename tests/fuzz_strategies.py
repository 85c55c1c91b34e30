"""Hypothesis strategies shared by the fuzz tests of the chapter's functions,
TwoLayerNet's methods and ``train``: special floats, arrays of any dtype,
shape and layout (as fuzz_harness.Arr recipes), junk, labels, parameter
dicts, steps and numerical-gradient methods. Each surface's own cases
(NetCase, TrainCase, the loss inputs, the command lines) are drawn in its
test file.
"""

import numpy as np
from hypothesis import event
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import scratchnet as sn
from fuzz_harness import PARAM_NAMES, Arr

LAYOUTS = ("C", "C", "F", "reversed", "strided", "readonly", "swapped", "unaligned")
SPECIAL = [
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.5,
    255.0,
    5e-324,
    2.2250738585072014e-308,
    1e-300,
    1e-8,
    40.0,
    -40.0,
    745.2,
    -745.2,
    1e7,
    -1e7,
    1e16,
    1e300,
    -1e300,
    1e308,
    1.7976931348623157e308,
    -1e308,
    np.inf,
    -np.inf,
    np.nan,
]
FINITE_SPECIAL = [v for v in SPECIAL if np.isfinite(v)]
any_floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(SPECIAL))
# Values a net meets: pixels in [0, 1] and 0-255, zeros (the kernels list the
# non-zeros), moderate reals, and the special values.
data_floats = st.one_of(st.just(0.0), st.floats(0, 1), st.floats(-300, 300), st.sampled_from(SPECIAL))
finite_data_floats = st.one_of(st.just(0.0), st.floats(0, 1), st.floats(-300, 300), st.sampled_from(FINITE_SPECIAL))
bad_scalars = st.one_of(
    st.booleans(),
    st.none(),
    st.text(max_size=4),
    st.complex_numbers(max_magnitude=10),
    st.integers(10**300, 10**400),
)
DTYPES = ["f8", "f4", "f2", "i8", "i4", "u1", "u8", "?", "c16", "U3", "O"]
REAL_DTYPES = ["f8", "f8", "f8", "f4", "f2", "i8", "u1"]


def _elements(dtype, floats):
    if dtype == np.float64:
        return floats
    if dtype.kind == "f":
        return hnp.from_dtype(dtype, allow_nan=True, allow_infinity=True)
    if dtype.kind == "O":
        return st.one_of(st.floats(-3, 3), st.none(), st.text(max_size=2), st.integers(-3, 3))
    return None


@st.composite
def arrays(draw, shape=None, dtypes=("f8",), floats=data_floats, max_dims=3, max_side=4):
    """An Arr of one of ``dtypes``, of ``shape`` (or any shape, 0-d and empty included), any layout."""
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    if shape is None:
        shape = draw(hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=0, max_side=max_side))
    base = draw(hnp.arrays(dtype, shape, elements=_elements(dtype, floats)))
    return Arr(base, draw(st.sampled_from(LAYOUTS)))


junk = st.one_of(
    bad_scalars,
    arrays(dtypes=DTYPES),
    st.lists(st.floats(-3, 3), max_size=3),
    st.lists(st.lists(st.integers(0, 2), max_size=3), max_size=3),
)


@st.composite
def labels(draw, n, k, valid=True):
    """Targets for n samples of k classes: integer labels or one-hot rows,
    in range, or (``valid=False``, half the time) out of range, one-hot
    rows with no 1 or two, floats, another count."""
    kind = draw(st.sampled_from(["labels", "labels", "one-hot", "list"]))
    wrong = not valid and draw(st.booleans())
    if kind == "one-hot":
        rows = draw(st.lists(st.integers(0, max(k - 1, 0)), min_size=n, max_size=n))
        onehot = np.zeros((n, k))
        onehot[np.arange(n), rows] = 1.0 if k else 0.0
        if wrong and n and k:
            how = draw(st.sampled_from(["two", "none", "2", "nan", "0.5"]))
            r = draw(st.integers(0, n - 1))
            value = {"two": 1.0, "none": 0.0, "2": 2.0, "nan": np.nan, "0.5": 0.5}[how]
            onehot[r, rows[r] if how != "two" else (rows[r] + 1) % k] = value
        dtype = draw(st.sampled_from(["f8", "i8", "?", "f4"])) if np.isfinite(onehot).all() else "f8"
        return Arr(onehot.astype(dtype), draw(st.sampled_from(LAYOUTS)))
    values = draw(st.lists(st.integers(0, max(k - 1, 0)), min_size=n, max_size=n))
    if wrong and n:
        how = draw(st.sampled_from(["-1", "k", "huge", "float", "count"]))
        if how == "count":
            values = values + [0]
        elif how == "float":
            return Arr(np.array(values, dtype=float) + draw(st.sampled_from([0.0, 0.5])))
        else:
            values[draw(st.integers(0, n - 1))] = {"-1": -1, "k": k, "huge": 2**62}[how]
    if kind == "list":
        return values
    dtype = draw(st.sampled_from(["i8", "i4", "u1", "i1", "u8"]))
    if min(values, default=0) < 0 and dtype[0] == "u" or max(values, default=0) > np.iinfo(dtype).max:
        dtype = "i8"
    return Arr(np.array(values, dtype=dtype), draw(st.sampled_from(LAYOUTS)))


# -- parameters ---------------------------------------------------------------------
WEIGHT_SCALES = [0.01, 0.01, 1.0, 30.0, 1e3]
PARAM_LAYOUTS = ("C", "C", "F", "reversed", "strided")


@st.composite
def sizes(draw):
    return draw(st.integers(1, 4)), draw(st.integers(1, 3)), draw(st.integers(1, 3))


def fresh_params(d, h, k, std, seed):
    return sn.TwoLayerNet(d, h, k, std, seed=seed).params


@st.composite
def params(draw, d, h, k, valid=True):
    """A parameter dict of a d-h-k net (weights of std 0.01 to 1000, special
    values in a few entries), with one change when ``valid=False``: a key
    missing, W1 and W2 swapped, a transposed or reshaped array, another
    dtype, a list, a 0-size hidden layer or output, not a dict at all."""
    p = fresh_params(d, h, k, draw(st.sampled_from(WEIGHT_SCALES)), draw(st.integers(0, 2**32 - 1)))
    for _ in range(draw(st.integers(0, 2))):  # a few special entries; NaN/inf only when anything goes
        name = draw(st.sampled_from(PARAM_NAMES))
        index = tuple(draw(st.integers(0, s - 1)) for s in p[name].shape)
        p[name][index] = draw(st.sampled_from(SPECIAL if not valid else FINITE_SPECIAL))
    # Layouts kernel_params copies (F, views) per array; read-only (as
    # np.load(..., mmap_mode="r") gives them, passed on as they are) for all
    # four at once: each combination of flags is another Numba signature to
    # compile, 5-30 s each on a cold cache. (Unaligned data reaches the
    # kernels through x.)
    together = draw(st.sampled_from(["per array"] * 7 + ["readonly"]))
    spec = {
        name: Arr(a, draw(st.sampled_from(PARAM_LAYOUTS)) if together == "per array" else together)
        for name, a in p.items()
    }
    if valid:
        return spec
    change = draw(
        st.sampled_from(
            ["none", "missing", "swap", "transpose", "dtype", "list", "empty", "scalar", "extra", "3-d", "not a dict"]
        )
    )
    event(f"params: {change}")
    name = draw(st.sampled_from(PARAM_NAMES))
    if change == "missing":
        del spec[name]
    elif change == "swap":
        spec["W1"], spec["W2"] = spec["W2"], spec["W1"]
    elif change == "transpose":
        spec[name] = Arr(np.ascontiguousarray(p[name].T), spec[name].layout)
    elif change == "dtype":
        dtype = draw(st.sampled_from(["f4", "f2", "i8", "?", "c16", "O", "U3", "longdouble"]))
        with np.errstate(all="ignore"):  # 1e308 as float16 is inf, as an integer anything
            spec[name] = Arr(p[name].astype(dtype), spec[name].layout)
    elif change == "list":
        spec[name] = p[name].tolist()
    elif change == "empty":  # no hidden unit, or no class
        if draw(st.booleans()):
            spec.update(W1=Arr(np.zeros((d, 0))), b1=Arr(np.zeros(0)), W2=Arr(np.zeros((0, k))))
        else:
            spec.update(W2=Arr(np.zeros((h, 0))), b2=Arr(np.zeros(0)))
    elif change == "scalar":
        spec[name] = draw(st.sampled_from([0.0, 1, None, "W"]))
    elif change == "extra":
        spec[draw(st.sampled_from(["W3", "w1", 1]))] = Arr(np.zeros(2))
    elif change == "3-d":
        spec[name] = Arr(p[name][None], spec[name].layout)
    elif change == "not a dict":
        return draw(st.sampled_from([None, [], "params", ("W1", "b1")])) if draw(st.booleans()) else list(spec.values())
    return spec


def shape_of(spec, name, axis):
    """The size of an axis of a parameter in a spec, or None."""
    a = spec.get(name) if isinstance(spec, dict) else None
    return a.base.shape[axis] if isinstance(a, Arr) and a.base.ndim > axis else None


steps = st.one_of(
    st.floats(1e-8, 0.5), st.sampled_from([1e-4, 1e-4, 1e-7, 1e-2, 1, 3.0, 1e3, 1e-300, 2.2250738585072014e-308, 1e300])
)
bad_steps = st.one_of(st.sampled_from(SPECIAL), st.integers(-2, 3), bad_scalars, steps)
methods = st.sampled_from(["series", "perturbed"])
bad_methods = st.one_of(methods, st.sampled_from(["Series", "", "numpy", None, 1, ("series",)]))
