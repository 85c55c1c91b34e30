"""The child-process runner (child_runner.py), its JSON codec (json_codec.py)
and the fuzz tests' use of them (fuzz_harness.Worker, Arr): a crash or a
hang is reported, values cross exactly, arrays reach the child in the
layout their recipe names."""

import math
import struct
import time

import numpy as np
import pytest

import json_codec
from child_runner import Child, ChildError
from fuzz_harness import Arr, Worker
from fuzz_strategies import LAYOUTS


# -- in the child ------------------------------------------------------------------
def _misbehave(what):
    if what == "segfault":
        import ctypes

        ctypes.string_at(0)  # reads address 0: SIGSEGV
    time.sleep(3600)


def _layout(arr):
    """What a call in the child receives: the built array's layout and bytes."""
    return _described(arr.build())


def _described(a):
    flags = ("c_contiguous", "f_contiguous", "writeable", "aligned")
    return {
        "dtype": a.dtype.str,
        "shape": a.shape,
        "strides": a.strides,
        "flags": {f: bool(getattr(a.flags, f)) for f in flags},
        "values": a.tobytes(order="A").hex() if a.dtype != object else repr(a.tolist()),
    }


HANDLERS = {"selftest": _misbehave, "echo": lambda v: v, "layout": _layout, "raise": lambda v: 1 / 0}


# -- in the test -------------------------------------------------------------------
def test_a_crash_or_a_hang_fails_the_example_and_the_next_gets_a_new_child():
    # A segfault and a hang in the child each fail the example with what
    # happened and the child's last words (its log names the request); the
    # next example gets a fresh child. (Under ASan a segfault ends in its
    # report and exit status 1.)
    w = Worker("test_child_runner")
    crash = r"(?s)CRASH: the child died \((SIGSEGV|SIGABRT|exit status 1)\) running the selftest example.*segfault"
    try:
        with pytest.raises(pytest.fail.Exception, match=crash):
            w.run("selftest", "segfault")
        with pytest.raises(pytest.fail.Exception, match=r"(?s)HANG: the selftest example .* after 2.0 s.*sleep"):
            w.run("selftest", "sleep", timeout=2.0)
        assert w.run("echo", [1.5]) == [1.5]
    finally:
        w.close()


def test_a_handler_that_raises_is_reported_with_its_traceback():
    with Child("test_child_runner") as child:
        with pytest.raises(ChildError, match=r"(?s)raise raised in the child:.*ZeroDivisionError"):
            child.call("raise", None, timeout=60)
        assert child.call("echo", "still serving", timeout=60) == "still serving"


def _nan(bits):
    return struct.unpack(">d", struct.pack(">Q", bits))[0]


def _same(a, b):
    """a and b are the same value: the same types all the way down, floats and arrays bit for bit."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, (list, tuple)):
        assert len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    elif isinstance(a, dict):
        assert list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    elif isinstance(a, np.ndarray):
        assert _described(a) == _described(b), (_described(a), _described(b))
    elif isinstance(a, (float, complex, np.generic)):
        assert json_codec.encode(a) == json_codec.encode(b) and np.asarray(a).tobytes() == np.asarray(b).tobytes()
    else:
        assert a == b, (a, b)
    return True


def test_values_cross_to_the_child_and_back_bit_for_bit():
    swapped = np.array([1.5, _nan(0x7FF8000000000001), -0.0]).astype(">f8")
    readonly = np.arange(6.0).reshape(2, 3)
    readonly.flags.writeable = False
    objects = np.empty(3, dtype=object)
    objects[:] = [None, 1.5, "ab"]
    value = {
        "floats": [0.0, -0.0, math.inf, -math.inf, _nan(0x7FF8000000000001), _nan(0xFFF0000000000002), 5e-324],
        "complex": complex(_nan(0xFFF8000000000000), -0.0),
        "ints": (True, 0, -(2**70), 10**400),
        1: "an integer key",
        ("W1", 2): None,
        "scalars": [np.float64(1.0), np.float32(_nan(0x7FF8000000000003)), np.int8(-3), np.bool_(True)],
        "arrays": [
            np.array([0.1]),
            swapped,
            np.asfortranarray(np.arange(6.0).reshape(2, 3)),
            readonly,
            objects,
            np.array(["abc", ""], dtype="U3"),
            np.array([1.0, 2.0], dtype=np.longdouble),
            np.zeros((0, 3), dtype="c16"),
            np.array(7, dtype="u1"),
        ],
        "builtin": [print],
        "record": Arr(np.arange(4.0), "reversed"),
    }
    with Child("test_child_runner") as child:
        back = child.call("echo", value, timeout=60)
    assert back is not value
    assert _same(back["record"].base, value["record"].base) and back["record"].layout == "reversed"
    del back["record"], value["record"]
    assert _same(back, value)


@pytest.mark.parametrize("dtype", ["f8", "f4", "i8", "c16", "?", "O"])
def test_arrays_reach_the_child_in_the_layout_their_recipe_names(dtype):
    base = np.arange(12).reshape(3, 4).astype(dtype)
    expected = {
        "C": lambda d: d["flags"]["c_contiguous"],
        "F": lambda d: d["flags"]["f_contiguous"] and not d["flags"]["c_contiguous"],
        "reversed": lambda d: all(s < 0 for s in d["strides"]),
        "strided": lambda d: not (d["flags"]["c_contiguous"] or d["flags"]["f_contiguous"]),
        "readonly": lambda d: not d["flags"]["writeable"],
        "swapped": lambda d: d["dtype"][0] == ">" or dtype in ("?", "O"),  # no byte order to swap
        "unaligned": lambda d: not d["flags"]["aligned"] or dtype in ("?", "O"),  # 1 byte, or pointers
    }
    with Child("test_child_runner") as child:
        for layout in sorted(set(LAYOUTS)):
            got = child.call("layout", Arr(base, layout), timeout=60)
            assert got == _described(Arr(base, layout).build()), layout
            assert expected[layout](got), (layout, got)


@pytest.mark.parametrize("value", [lambda: 0, ValueError("x"), {1, 2}, object(), np.float64])
def test_the_codec_refuses_what_it_cannot_encode(value):
    with pytest.raises(TypeError, match="json_codec: cannot encode"):
        json_codec.dumps(value)
