"""Values as JSON, exactly: what crosses to and from a child interpreter (child_runner.py).

JSON's null, booleans, integers (of any size) and strings stand for
themselves; every other value is an object with one key naming its kind:

- ``{"float": "7ff8000000000001"}``: a float by its IEEE 754 bits, so NaN
  payloads, -0.0 and the infinities come back bit for bit;
  ``{"complex": [real bits, imaginary bits]}`` likewise;
- ``{"tuple": [...]}`` (a list is a JSON array); ``{"dict": [[key, value],
  ...]}``: keys of any kind, in order;
- ``{"ndarray": {"dtype": "<f8", "shape": [2, 3], "order": "F",
  "writeable": false, "data": base64}}``: the dtype string keeps the byte
  order, the data are the raw bytes in that order; an object array lists its
  ``"items"`` (each encoded) instead of ``"data"``;
- ``{"scalar": {"dtype": "<f8", "data": base64}}``: a NumPy scalar;
- ``{"builtin": "print"}``: a built-in function, by name;
- ``{"record": ["Arr", {field: value}]}``: an instance of a dataclass
  registered with :func:`record`, rebuilt from its fields.

An array keeps its values, dtype, C or Fortran order and writeable flag;
other strides and the alignment of its data are not kept. Where those
matter (the layout a call receives), send a recipe instead: a record that
builds the array where it is used, as fuzz_harness.Arr does. Nothing is
pickled; anything else is refused with a TypeError.
"""

import base64
import builtins
import dataclasses
import json
import struct
import types

import numpy as np

RECORDS = {}


def record(cls):
    """Class decorator: instances of the dataclass ``cls`` cross as their fields."""
    if not dataclasses.is_dataclass(cls) or RECORDS.setdefault(cls.__name__, cls) is not cls:
        raise TypeError(f"json_codec.record: {cls!r} is not a dataclass, or its name is taken")
    return cls


def dumps(obj):
    """``obj`` as one line of JSON."""
    return json.dumps(encode(obj), allow_nan=False, separators=(",", ":"))


def loads(line):
    return decode(json.loads(line))


def _float_bits(v):
    return struct.pack(">d", v).hex()


def _float_from(bits):
    return struct.unpack(">d", bytes.fromhex(bits))[0]


def _b64(data):
    return base64.b64encode(data).decode("ascii")


def encode(obj):
    """``obj`` as JSON-able data (see the module docstring)."""
    if obj is None or type(obj) in (bool, int, str):
        return obj
    if isinstance(obj, np.generic):  # before float: np.float64 is a float
        return {"scalar": {"dtype": obj.dtype.str, "data": _b64(obj.tobytes())}}
    if type(obj) is float:
        return {"float": _float_bits(obj)}
    if type(obj) is complex:
        return {"complex": [_float_bits(obj.real), _float_bits(obj.imag)]}
    if type(obj) is list:
        return [encode(v) for v in obj]
    if type(obj) is tuple:
        return {"tuple": [encode(v) for v in obj]}
    if type(obj) is dict:
        return {"dict": [[encode(k), encode(v)] for k, v in obj.items()]}
    if type(obj) is np.ndarray:
        return {"ndarray": _encode_array(obj)}
    if isinstance(obj, types.BuiltinFunctionType) and getattr(builtins, obj.__name__, None) is obj:
        return {"builtin": obj.__name__}
    if RECORDS.get(type(obj).__name__) is type(obj):
        fields = {f.name: encode(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        return {"record": [type(obj).__name__, fields]}
    raise TypeError(f"json_codec: cannot encode {type(obj).__name__}: {obj!r}"[:300])


def _encode_array(a):
    order = "F" if a.flags.f_contiguous and not a.flags.c_contiguous else "C"
    out = {"dtype": a.dtype.str, "shape": list(a.shape), "order": order, "writeable": bool(a.flags.writeable)}
    if a.dtype.hasobject:
        out["items"] = [encode(v) for v in a.ravel(order=order).tolist()]
    else:
        out["data"] = _b64(a.tobytes(order=order))
    return out


def decode(data):
    """The value ``encode`` made ``data`` of."""
    if data is None or type(data) in (bool, int, str):
        return data
    if type(data) is list:
        return [decode(v) for v in data]
    ((kind, value),) = data.items()
    if kind == "float":
        return _float_from(value)
    if kind == "complex":
        return complex(_float_from(value[0]), _float_from(value[1]))
    if kind == "tuple":
        return tuple(decode(v) for v in value)
    if kind == "dict":
        return {decode(k): decode(v) for k, v in value}
    if kind == "ndarray":
        return _decode_array(value)
    if kind == "scalar":
        return np.frombuffer(base64.b64decode(value["data"]), dtype=np.dtype(value["dtype"]))[0]
    if kind == "builtin":
        f = getattr(builtins, value)
        if not isinstance(f, types.BuiltinFunctionType):
            raise TypeError(f"json_codec: {value!r} is not a built-in function")
        return f
    if kind == "record":
        name, fields = value
        return RECORDS[name](**{k: decode(v) for k, v in fields.items()})
    raise TypeError(f"json_codec: unknown kind {kind!r}")


def _decode_array(spec):
    dtype, shape, order = np.dtype(spec["dtype"]), tuple(spec["shape"]), spec["order"]
    if "items" in spec:
        flat = np.empty(len(spec["items"]), dtype=dtype)
        for i, v in enumerate(spec["items"]):  # one by one: a list item is an element, not a row
            flat[i] = decode(v)
    else:
        flat = np.frombuffer(base64.b64decode(spec["data"]), dtype=dtype)
    a = np.empty(shape, dtype=dtype, order=order)  # strides as NumPy makes them for this shape and order
    a[...] = flat.reshape(shape, order=order)
    a.flags.writeable = spec["writeable"]
    return a
