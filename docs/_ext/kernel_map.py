"""``.. kernel-map::``: the table of every kernel, generated and checked at build time.

The kernels are those of :data:`scratchnet.backends.KERNELS` (with the
signature comment beside each name there). For each, ``KERNEL_MAP`` below
says by hand what the code cannot: which public functions reach it, its
module (``backends/numpy/<module>.py``, ``backends/numba/<module>.py``,
``kernels/<module>.c``), its C functions, its rows in ``kernels/module.c``,
its naive twins in ``tests/naive.py`` and the tests that compare them.

Every name is checked when the docs are built (``check``), and any mismatch
is an error at the directive, which fails the build with ``-W`` (as CI
builds): a kernel of ``KERNELS`` without an entry here (or an entry for a
kernel that is gone), a public function that does not import, a backend
module without the kernel (or a package export that is not that function),
a C function not defined in its file or not declared in scratchnet.h, a
module.c row that does not exist or that ``backends/c.py``'s function does
not call (or a row it calls that the entry leaves out), a naive twin or a
test that is not defined.
"""

import ast
import importlib
import io
import re
import tokenize
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository: docs/_ext/ -> docs/ -> root


@dataclass(frozen=True)
class Kernel:
    public: tuple  # dotted names of the public functions and methods that call the kernel
    module: str  # backends/numpy/<module>.py, backends/numba/<module>.py, kernels/<module>.c
    c: tuple  # the C functions (sn_*) in kernels/<module>.c
    glue: tuple  # rows of module.c's KERNELS table that backends/c.py's function of that name calls (directly or not)
    naive: tuple  # functions of tests/naive.py
    tests: tuple  # "test_file.py::test_name"


KERNEL_MAP = {
    "sigmoid": Kernel(
        public=("scratchnet.sigmoid",),
        module="activations",
        c=("sn_sigmoid",),
        glue=("sigmoid",),
        naive=("sigmoid",),
        tests=(
            "test_functions.py::test_sigmoid_matches_naive",
            "test_functions.py::test_one_and_two_threads_are_bitwise_identical",
        ),
    ),
    "softmax": Kernel(
        public=("scratchnet.softmax",),
        module="activations",
        c=("sn_softmax",),
        glue=("softmax",),
        naive=("softmax",),
        tests=("test_functions.py::test_softmax_matches_naive", "test_functions.py::test_backends_agree"),
    ),
    "cross_entropy_error": Kernel(
        public=("scratchnet.cross_entropy_error", "scratchnet.TwoLayerNet.loss"),
        module="losses",
        c=("sn_cross_entropy_error",),
        glue=("cross_entropy_error",),
        naive=("cross_entropy_error",),
        tests=("test_functions.py::test_cross_entropy_matches_naive", "test_functions.py::test_backends_agree"),
    ),
    "sparse_rows": Kernel(
        public=("scratchnet.TwoLayerNet.accuracy", "scratchnet.train"),
        module="sparse",
        c=("sn_row_counts", "sn_fill_rows"),
        glue=("row_counts", "fill_rows"),
        naive=("nonzeros_by_row",),
        tests=("test_kernels.py::test_sparse_rows_list_every_non_zero",),
    ),
    "batch_take": Kernel(
        public=("scratchnet.train",),
        module="sparse",
        c=("sn_batch_take", "sn_columns"),
        glue=("batch_take",),
        naive=("nonzeros_by_row", "nonzeros_by_column"),
        tests=(
            "test_kernels.py::test_batch_take_equals_the_dense_rows",
            "test_c_extension.py::test_batch_take_checks_rows",
        ),
    ),
    "batch_from_dense": Kernel(
        public=(
            "scratchnet.TwoLayerNet.make_batch",
            "scratchnet.TwoLayerNet.predict",
            "scratchnet.TwoLayerNet.numerical_gradient",
            "scratchnet.TwoLayerNet.gradient",
        ),
        module="sparse",
        c=("sn_row_counts", "sn_fill_rows", "sn_columns"),
        glue=("row_counts", "fill_rows", "columns"),
        naive=("nonzeros_by_row", "nonzeros_by_column"),
        tests=(
            "test_kernels.py::test_batch_from_dense_lists_rows_and_columns",
            "test_kernels.py::test_an_all_zero_batch",
        ),
    ),
    "forward": Kernel(
        public=(
            "scratchnet.TwoLayerNet.predict",
            "scratchnet.TwoLayerNet.loss",
            "scratchnet.TwoLayerNet.forward_batch",
        ),
        module="forward",
        c=("sn_forward",),
        glue=("forward",),
        naive=("net_forward",),
        tests=(
            "test_kernels.py::test_forward_matches_the_textbook",
            "test_kernels.py::test_compiled_kernels_are_bitwise_twins",
            "test_kernels.py::test_threads_change_no_bit",
        ),
    ),
    "count_correct": Kernel(
        public=("scratchnet.TwoLayerNet.accuracy", "scratchnet.TwoLayerNet.count_correct", "scratchnet.train"),
        module="forward",
        c=("sn_count_correct",),
        glue=("count_correct",),
        naive=("net_forward",),
        tests=("test_kernels.py::test_count_correct_counts_the_largest_logit",),
    ),
    "backprop": Kernel(
        public=("scratchnet.TwoLayerNet.gradient", "scratchnet.gradient_check", "scratchnet.train"),
        module="backprop",
        c=("sn_backprop",),
        glue=("backprop",),
        naive=("net_backprop",),
        tests=("test_network.py::test_backprop_matches_the_textbooks", "test_network.py::test_gradient_check"),
    ),
    "numgrad_series": Kernel(
        public=("scratchnet.TwoLayerNet.numerical_gradient", "scratchnet.train"),
        module="numgrad_series",
        c=("sn_numgrad_series",),
        glue=("numgrad_series", "numgrad_perturbed"),
        naive=("net_numerical_gradient", "central_difference_oracle", "loss_taylor"),
        tests=(
            "test_network.py::test_matches_the_loop",
            "test_network.py::test_oracle_on_the_chapters_net",
            "test_network.py::test_series_coefficients_equal_the_taylor_coefficients",
            "test_network.py::test_remainder_bound_is_sound_and_within_a_thousand_of_the_truth",
            "test_network.py::test_the_documented_paths",
            "test_network.py::test_compiled_series_equals_numpy",
            "test_network.py::test_numba_and_c_are_bitwise_twins",
            "test_network.py::test_numerical_gradient_threads_bitwise",
        ),
    ),
    "numgrad_perturbed": Kernel(
        public=("scratchnet.TwoLayerNet.numerical_gradient",),
        module="numgrad_perturbed",
        c=("sn_numgrad_perturbed",),
        glue=("numgrad_perturbed",),
        naive=("net_numerical_gradient", "central_difference_oracle"),
        tests=(
            "test_network.py::test_matches_the_loop",
            "test_network.py::test_oracle_on_the_chapters_net",
            "test_network.py::test_perturbed_hidden_pair_paths_agree",
            "test_network.py::test_fallback_units_equal_the_perturbed_method",
            "test_network.py::test_compiled_perturbed_equals_numpy",
            "test_network.py::test_numba_and_c_are_bitwise_twins",
        ),
    ),
}


# -- reading the code -------------------------------------------------------------
def kernel_signatures():
    """{kernel: the comment beside its name in KERNELS}, read from backends/__init__.py."""
    from scratchnet import backends

    source = Path(backends.__file__).read_text()
    signatures, inside, last = {}, False, None
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.NAME and tok.string == "KERNELS":
            inside = True
        elif inside and tok.type == tokenize.STRING:
            last = ast.literal_eval(tok.string)
        elif inside and tok.type == tokenize.COMMENT and last is not None:
            signatures[last] = tok.string.lstrip("# ").strip()
            last = None
        elif inside and tok.type == tokenize.OP and tok.string == ")" and tok.start[1] == 0:
            break
    return signatures


def resolve(dotted):
    """The object a dotted name points to: the longest importable module prefix, then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def functions_in(path):
    """{name: ast node} of the top-level functions of a Python file."""
    tree = ast.parse(Path(path).read_text(), filename=str(path))
    return {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}


def ckernels_calls(name, functions, seen=None):
    """Names called as ``_ckernels.NAME(...)`` by function ``name`` of ``functions`` (a module's
    top-level functions, by name), directly or through the module's other functions."""
    seen = set() if seen is None else seen
    seen.add(name)
    rows = set()
    for node in ast.walk(functions[name]):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "_ckernels":
            rows.add(f.attr)
        elif isinstance(f, ast.Name) and f.id in functions and f.id not in seen:
            rows |= ckernels_calls(f.id, functions, seen)
    return rows


def c_functions_defined(path):
    """Names of the non-static functions defined in a C file (a definition starts a line)."""
    text = Path(path).read_text()
    return set(re.findall(r"^(?!static)[a-z][\w \*]*?\b(sn_\w+)\s*\([^;{]*\)\s*\{", text, flags=re.M))


def module_c_rows(path):
    """Names of the rows of module.c's KERNELS table: the kernels the extension exports."""
    text = Path(path).read_text()
    table = re.search(r"static const struct kernel KERNELS\[\] = \{(.*?)\n\};", text, flags=re.S)
    if table is None:
        raise ValueError("kernel-map: kernels/module.c has no `static const struct kernel KERNELS[]` table")
    return set(re.findall(r'^\s*\{"(\w+)",', table.group(1), flags=re.M))


# -- checking the map ------------------------------------------------------------------
def check(kernels_tuple, kernel_map=KERNEL_MAP, root=ROOT):
    """Every mismatch between the map and the code, as a list of messages (empty: the map is true)."""
    problems = []
    missing = [k for k in kernels_tuple if k not in kernel_map]
    stale = [k for k in kernel_map if k not in kernels_tuple]
    if missing:
        problems.append(f"kernels of scratchnet.backends.KERNELS without an entry in KERNEL_MAP: {missing}")
    if stale:
        problems.append(f"entries of KERNEL_MAP that are not kernels of scratchnet.backends.KERNELS: {stale}")

    header = (root / "kernels" / "scratchnet.h").read_text()
    rows = module_c_rows(root / "kernels" / "module.c")
    c_py = functions_in(root / "src" / "scratchnet" / "backends" / "c.py")
    naive = functions_in(root / "tests" / "naive.py")
    try:
        from scratchnet import _ckernels
    except ImportError:  # built without a C compiler: the sources are still checked
        _ckernels = None
    numpy_pkg = importlib.import_module("scratchnet.backends.numpy")
    numba_pkg = importlib.import_module("scratchnet.backends.numba")

    for name in kernels_tuple:
        k = kernel_map.get(name)
        if k is None:
            continue
        where = f"kernel {name!r}"
        for dotted in k.public:
            try:
                obj = resolve(dotted)
            except (ImportError, AttributeError):
                problems.append(f"{where}: public function {dotted} does not exist")
                continue
            if not callable(obj):
                problems.append(f"{where}: public {dotted} is not callable")
        for backend, pkg in (("numpy", numpy_pkg), ("numba", numba_pkg)):
            modname = f"scratchnet.backends.{backend}.{k.module}"
            try:
                mod = importlib.import_module(modname)
            except ImportError:
                problems.append(f"{where}: module {modname} does not exist")
                continue
            impl = getattr(mod, name, None)
            if impl is None:
                problems.append(f"{where}: {modname} has no function {name}")
                continue
            exported = getattr(pkg, name, None)
            if getattr(exported, "__wrapped__", exported) is not impl:
                problems.append(f"{where}: scratchnet.backends.{backend}.{name} is not {modname}.{name}")
        c_file = root / "kernels" / f"{k.module}.c"
        defined = c_functions_defined(c_file) if c_file.exists() else set()
        if not c_file.exists():
            problems.append(f"{where}: kernels/{k.module}.c does not exist")
        for fn in k.c:
            if fn not in defined:
                problems.append(f"{where}: {fn} is not defined in kernels/{k.module}.c")
            if not re.search(rf"\b{fn}\s*\(", header):
                problems.append(f"{where}: {fn} is not declared in kernels/scratchnet.h")
        if name not in c_py:
            problems.append(f"{where}: src/scratchnet/backends/c.py has no function {name}")
        else:
            called = ckernels_calls(name, c_py)
            for row in k.glue:
                if row not in rows:
                    problems.append(f"{where}: kernels/module.c's KERNELS table has no row {row!r}")
                if row not in called:
                    problems.append(f"{where}: backends/c.py's {name} does not call _ckernels.{row}")
                if _ckernels is not None and not hasattr(_ckernels, row):
                    problems.append(f"{where}: the built scratchnet._ckernels has no {row}")
            unlisted = called - set(k.glue)
            if unlisted:
                problems.append(f"{where}: backends/c.py's {name} calls _ckernels.{sorted(unlisted)}, not in the map")
        for fn in k.naive:
            if fn not in naive:
                problems.append(f"{where}: tests/naive.py has no function {fn}")
        for test in k.tests:
            file, _, func = test.partition("::")
            path = root / "tests" / file
            if not path.exists() or func not in functions_in(path):
                problems.append(f"{where}: test {test} does not exist")
    return problems


# -- the directive ----------------------------------------------------------------------
def _lit(text):
    return f"``{text}``"


def _public(dotted):
    """A cross-reference to a public function or method, shown without the package name."""
    short = dotted.removeprefix("scratchnet.")
    role = "meth" if "." in short else "func"
    return f":{role}:`{short} <{dotted}>`"


def _lines(items):
    """A cell of several lines (a line block), one item each."""
    return ["| " + item for item in items]


def table_rst(kernels_tuple, signatures):
    """The map as a list-table (reStructuredText lines)."""
    head = ["kernel", "public functions", "NumPy, Numba, C", "glue: module.c rows; c.py", "naive twins", "tests"]
    lines = [".. list-table::", "   :header-rows: 1", "   :class: kernel-map", "   :widths: 15 16 20 13 13 23", ""]
    rows = [[[h] for h in head]]
    for name in kernels_tuple:
        k = KERNEL_MAP[name]
        tests = {}
        for test in k.tests:
            file, _, func = test.partition("::")
            tests.setdefault(file, []).append(func)
        rows.append(
            [
                [_lit(name)] + (["", _lit(signatures[name])] if signatures.get(name) else []),
                _lines([_public(p) for p in k.public]),
                _lines(
                    [
                        _lit(f"numpy/{k.module}.py"),
                        _lit(f"numba/{k.module}.py"),
                        _lit(f"{k.module}.c") + ": " + ", ".join(_lit(f) for f in k.c),
                    ]
                ),
                _lines([", ".join(_lit(r) for r in k.glue), _lit(f"c.{name}")]),
                _lines([_lit(f) for f in k.naive]),
                _lines([f"{_lit(file)}: " + ", ".join(_lit(f) for f in funcs) for file, funcs in tests.items()]),
            ]
        )
    for row in rows:
        for col, cell in enumerate(row):
            bullet = "   * - " if col == 0 else "     - "
            lines.append(bullet + cell[0])
            lines += ["       " + text if text else "" for text in cell[1:]]
    return lines


def setup(app):
    """Register ``.. kernel-map::`` (Sphinx is imported here, so ``check`` runs without it)."""
    from docutils import nodes
    from docutils.statemachine import StringList
    from sphinx.util.docutils import SphinxDirective

    class KernelMap(SphinxDirective):
        has_content = False

        def run(self):
            from scratchnet import backends

            problems = check(backends.KERNELS)
            if problems:  # an error at this directive's line: -W (as CI builds) fails the build
                raise self.error("kernel-map: the map disagrees with the code:\n" + "\n".join(problems))
            for path in (backends.__file__, __file__):
                self.env.note_dependency(path)
            for sub in ("kernels/module.c", "kernels/scratchnet.h", "src/scratchnet/backends/c.py", "tests/naive.py"):
                self.env.note_dependency(str(ROOT / sub))
            container = nodes.container()
            lines = table_rst(backends.KERNELS, kernel_signatures())
            self.state.nested_parse(StringList(lines, source="kernel_map.py"), self.content_offset, container)
            return container.children

    app.add_directive("kernel-map", KernelMap)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
