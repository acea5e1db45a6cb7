"""Compile a PyMC model for nutpie, keeping the compiled machine code on disk.

nutpie's numba backend wraps the model's log density (and the function that
expands a draw into the stored variables) in two ``numba.cfunc`` callbacks.
PyTensor caches the numba code of the graph itself, but nutpie's callbacks are
compiled again in every process: about 9 of the 10 seconds of a first fit, paid
again by every CLI call, worker process, notebook kernel and test process.

:func:`compile_for_nutpie` does what ``nutpie.compile_pymc_model`` does for the
numba backend, with three differences. The expansion callback only copies each
draw's position (one callback for every model, compiled once per machine); the
stored variables are computed after sampling from all draws at once
(:mod:`scleromx_bayes.derived`, :class:`PositionsModel`), which saves numba's
compile of a second graph per structure (about 4 s of a first fit). Sizes are data
(below). And each callback's compiled object code is
stored under PyTensor's compile directory (``<base_compiledir>/scleromx_bayes``),
keyed by everything that determines it: PyTensor's own cache key of the graph
(which includes its constants and the fast-math flag), the callback's sizes and
data layout, the versions of numba, llvmlite, PyTensor and nutpie, and the CPU.
A process that finds the key loads the object code (milliseconds) instead of
compiling it. A graph PyTensor cannot key is compiled as nutpie would, uncached.

PyTensor's key is computed from the rewritten graphs, and rewriting them costs
about a second per structure per process, more than loading their code. So each
compile also records (``graphs-<digest>.json``), under a digest of the graphs as
PyMC builds them (:mod:`scleromx_bayes.graph_fingerprint`) and of the versions,
PyTensor flags and this module's own code, the key the log density compiled to and
which shared data it reads, by name. A later process with the same graphs
reads the record and loads the callback without rewriting or compiling anything
(``graphs_reused`` in :func:`native_cache_stats`); a graph the digest cannot
describe, or a missing or damaged record or entry, takes the compiling path.
An empty compile directory (``PYTENSOR_FLAGS=base_compiledir=<empty dir>``)
empties this cache too.

Processes that reach a key's first compile at once (the workers of a grid or an OC
study, notebook kernels, test processes on an empty cache) compile it once: the one
compiling holds the key's lock (``flock`` on a file beside the cache), the others
wait for it and load what it stored.

Loaded code is the code that was compiled, byte for byte, so a fit's draws do not
depend on whether its callbacks were compiled now or loaded
(``tests/test_reproducibility.py`` checks it across processes).

Sizes are data, not code. nutpie lays the parameters out in one vector whose
length, and each parameter's slice of it, it writes into the graph as constants, so
a cohort with one more centre needs newly compiled code. Here the vector has no
fixed length and each slice is computed from the model's dimension lengths (shared
data, like the counts): one compiled log density serves every
cohort of a structure, whatever its numbers of regimens, sites and cells (a new size
costs the PyTensor graph, about a second, not numba's 10-30 s). The price is paid
per gradient: shapes known only at run time cost about 15% more per evaluation
on the example (base 3.9 -> 4.5 us, EXNEX 7.4 -> 8.6 us).

This uses nutpie's internal building blocks (``nutpie.compile_pymc``), so nutpie
is pinned to a minor version in ``pyproject.toml``; tests compare the cached path
with ``nutpie.compile_pymc_model``: draw for draw for a model without dims, log
density and gradient to 1e-13 for one with dims (whose fused arithmetic may round
differently in the last bit), and the stored variables with nutpie's own expansion
of the same draws.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: concurrent first compiles of one key each compile
    fcntl = None

import numba
import numpy as np
import pytensor
import pytensor.tensor as pt
from numba.core import compiler, registry
from numba.core.ccallback import CFunc
from nutpie import compile_pymc as _np
from pytensor.graph.basic import Variable
from pytensor.link.numba.cache import CACHED_SRC_FUNCTIONS

from .derived import DerivedVariables, derived_variables
from .graph_fingerprint import Unkeyable, fingerprint, shared_variables

__all__ = [
    "PositionsModel",
    "cache_directory",
    "compile_for_nutpie",
    "forget_loaded",
    "native_cache_stats",
]

_FORMAT = 4  # bump when what is stored changes
_loaded: dict[str, CFunc] = {}  # a key's code is loaded at most once per process
_lock = threading.Lock()
_stats = {"compiled": 0, "loaded": 0, "uncached": 0, "graphs_reused": 0}
# this module's own code is part of what a stored graph entry means
_SOURCE = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()


def cache_directory() -> Path:
    """Where compiled callbacks are kept: under PyTensor's ``base_compiledir``.

    Returns
    -------
    pathlib.Path
        ``<base_compiledir>/scleromx_bayes/nutpie``.

    Examples
    --------
    >>> from scleromx_bayes.native import cache_directory
    >>> cache_directory().name
    'nutpie'
    """
    return Path(pytensor.config.base_compiledir) / "scleromx_bayes" / "nutpie"


def native_cache_stats() -> dict[str, int]:
    """Callbacks this process compiled (and stored), loaded from disk, or compiled
    uncached (a graph PyTensor could not key), and models whose graphs were
    recognised before rewriting (their callbacks loaded without PyTensor compiling).

    Returns
    -------
    dict of str to int
        Counts under ``compiled``, ``loaded``, ``uncached`` and ``graphs_reused``.

    Examples
    --------
    >>> from scleromx_bayes.native import native_cache_stats
    >>> sorted(native_cache_stats())
    ['compiled', 'graphs_reused', 'loaded', 'uncached']
    """
    return dict(_stats)


def forget_loaded() -> None:
    """Forget the callbacks this process holds (the next compile loads from disk).

    Examples
    --------
    >>> from scleromx_bayes.native import forget_loaded
    >>> forget_loaded()
    """
    with _lock:
        _loaded.clear()


class _KeyedCache:
    """numba's cache protocol (``load_overload`` / ``save_overload``) on one file
    named by our key; numba's own function cache keys a closure by pickling its
    cells, which in nutpie's callbacks hold random names, so it never hits."""

    def __init__(self, path: Path):
        self.path = path

    def load_overload(self, sig, target_context):
        try:
            payload = pickle.loads(self.path.read_bytes())
        except FileNotFoundError:
            return None
        except Exception:  # noqa: BLE001 - a damaged entry is compiled again and replaced
            return None
        target_context.refresh()  # starts numba's runtime, whose symbols the code links to
        try:
            return compiler.CompileResult._rebuild(target_context, *payload)
        except Exception:  # noqa: BLE001 - an entry that does not rebuild: compile again
            return None

    def save_overload(self, sig, cres):
        if cres.library.has_dynamic_globals:  # addresses of this process: not reusable
            return
        _write_atomically(self.path, pickle.dumps(cres._reduce(), protocol=pickle.HIGHEST_PROTOCOL))


def _write_atomically(path: Path, data: bytes) -> None:
    """Write a cache entry so that a reader sees all of it or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _lock_path(key: str) -> Path:
    """The lock file a process holds while it compiles ``key``'s callback (beside the
    cache, not in it: a cache folder holds entries only)."""
    return cache_directory().with_name(cache_directory().name + "-locks") / f"{key}.lock"


@contextlib.contextmanager
def _compiling(key: str):
    """Hold ``key``'s lock across processes (``flock``) for a compile and its store.

    Worker processes of a sensitivity grid or an OC study, notebook kernels and test
    processes that start on an empty cache all reach the same structure's first fit
    at once; without the lock each compiles it (tens of seconds of CPU each). With
    it, one compiles and stores, and the others wait and then load the stored code.
    """
    if fcntl is None:
        yield
        return
    path = _lock_path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file is closed
        yield


def _cfunc(pyfunc: Callable, sig, key: str | None, *, stored_only: bool = False) -> CFunc | None:
    """``numba.cfunc(sig)(pyfunc)``, through the disk cache when ``key`` is given.
    ``stored_only``: load the code stored under ``key`` or return None, compiling
    nothing (``pyfunc`` is then a stand-in)."""
    if key is None:
        _stats["uncached"] += 1
        return numba.cfunc(sig)(pyfunc)
    with _lock:
        if key in _loaded:
            return _loaded[key]
        callback = CFunc(pyfunc, (sig.args, sig.return_type), {}, {})
        path = cache_directory() / f"{key}.nbc"
        if stored_only:
            callback._cache = _StoredOnly(path)
            try:
                callback.compile()
            except _NotStored:
                return None
        else:
            callback._cache = _KeyedCache(path)
            with _compiling(key):  # another process compiling this key: wait, then load
                callback.compile()
        _stats["loaded" if callback.cache_hits else "compiled"] += 1
        _loaded[key] = callback
        return callback


class _NotStored(Exception):
    pass


class _StoredOnly(_KeyedCache):
    """A cache that loads or fails: the callback it serves has no Python code."""

    def load_overload(self, sig, target_context):
        compiled = super().load_overload(sig, target_context)
        if compiled is None:
            raise _NotStored
        return compiled

    def save_overload(self, sig, cres):  # pragma: no cover - nothing is compiled
        raise _NotStored


def _never_compiled(*args):  # pragma: no cover - a loaded callback's stand-in source
    raise AssertionError("a callback loaded from disk has no Python code")


def _graph_key(fn) -> str | None:
    """PyTensor's cache key of a compiled function's graph (None if it has none)."""
    jit_fn = getattr(getattr(fn, "vm", None), "jit_fn", None)
    return CACHED_SRC_FUNCTIONS.get(getattr(jit_fn, "py_func", None))


def _key(kind: str, graph_key: str | None, *layout) -> str | None:
    if graph_key is None:
        return None
    target = registry.cpu_target.target_context.codegen().magic_tuple()
    versions = [version(p) for p in ("numba", "llvmlite", "pytensor", "nutpie")]
    text = repr((_FORMAT, kind, graph_key, layout, target, versions))
    return f"{kind}-{hashlib.sha256(text.encode()).hexdigest()}"


def _value_shape(model, rv, concrete: tuple[int, ...]):
    """The shape of ``rv``'s value as a graph of the model's dimension lengths (shared
    data), so the compiled code serves every size; the concrete shape where the value
    has no dims of its own (a constant, part of PyTensor's key: correct, size-bound)."""
    dims = model.named_vars_to_dims.get(rv.name) or ()
    if len(dims) != len(concrete) or any(d not in model.dim_lengths for d in dims):
        return tuple(concrete)
    lengths = [model.dim_lengths[d] for d in dims]
    if tuple(int(n.get_value()) for n in lengths) != tuple(concrete):  # a shape-changing transform
        return tuple(concrete)
    return tuple(pt.cast(n, "int64") for n in lengths)


@dataclass
class _Graphs:
    """A model's log density for nutpie as PyMC builds it, before any rewriting, and
    the layout of nutpie's position vector (cheap to make: nothing is rewritten or
    compiled)."""

    joined: Variable  # the position vector, of any length
    value_vars: list  # the free parameters' values, replaced by slices of `joined`
    logp: Variable  # the joint log density of the values, not yet rewritten
    replacements: dict  # value -> its slice of `joined`, reshaped
    names: list[str]  # the free parameters' value names, in `joined`'s order
    slices: list[slice]  # and their slices of it, at this model's sizes
    concrete_shapes: list[tuple[int, ...]]
    n_dim: int
    shapes: dict  # every variable's shape at this model's sizes, by name


def _graphs(model) -> _Graphs:
    """nutpie's ``_make_functions`` up to its compiles, for the log density only
    (the stored variables are computed after sampling: :mod:`derived`), with the
    position vector of any length and the parameters' slices of it computed from
    the dimension lengths: the graph, and so its compiled code, does not depend on
    the numbers of regimens, sites or cells (nutpie bakes them in as constants)."""
    shapes = _np._compute_shapes(model)
    value_vars = [model.rvs_to_values[rv] for rv in model.free_RVs]
    joined = pt.TensorType("float64", shape=(None,))(name="_unconstrained_point")
    names, slices, concrete_shapes, replacements = [], [], [], {}
    count, start = 0, pt.constant(0, dtype="int64")
    for rv, value in zip(model.free_RVs, value_vars, strict=True):
        concrete = tuple(shapes[value.name])
        shape = _value_shape(model, rv, concrete)
        length = pt.as_tensor(1, dtype="int64")
        for n in shape:
            length = length * n
        piece = joined[start : start + length]
        start = start + length
        replacements[value] = piece.reshape(shape).astype(rv.dtype)
        names.append(value.name)
        concrete_shapes.append(concrete)
        size = int(np.prod(concrete, dtype=int))
        slices.append(slice(count, count + size))
        count += size
    return _Graphs(
        joined=joined,
        value_vars=value_vars,
        logp=model.logp(),
        replacements=replacements,
        names=names,
        slices=slices,
        concrete_shapes=concrete_shapes,
        n_dim=count,
        shapes=shapes,
    )


def _stored_layout(graphs: _Graphs, derived: DerivedVariables) -> tuple[list, list, list]:
    """nutpie's layout of what its expansion would store (names, slices, shapes):
    the positions, then the variables :mod:`derived` computes, which nutpie's
    ``_prepare_dims_and_coords`` reads for their dims."""
    names, slices = list(graphs.names), list(graphs.slices)
    shapes, count = list(graphs.concrete_shapes), graphs.n_dim
    for name in derived.names:
        if name in derived.copied:  # a position already
            continue
        shape = tuple(graphs.shapes[name])
        size = int(np.prod(shape, dtype=int))
        names.append(name)
        slices.append(slice(count, count + size))
        shapes.append(shape)
        count += size
    return names, slices, shapes


def _compile_graphs(model, graphs: _Graphs):
    """The log density with its gradient, rewritten and compiled by PyTensor for
    numba (about a second per structure, most of it rewriting)."""
    from pymc.pytensorf import compile as compile_pymc
    from pytensor.graph import clone_replace, rewrite_graph

    rewrites = ["canonicalize", "stabilize"]
    if not model.check_bounds:
        rewrites.append("local_remove_check_parameter")
    logp = rewrite_graph(graphs.logp, include=rewrites)
    grads = pt.grad(logp, graphs.value_vars)
    grad = pt.concatenate([pt.as_tensor(g, allow_xtensor_conversion=True).ravel() for g in grads])
    logp, grad = clone_replace([logp, grad], graphs.replacements)
    with model:
        return compile_pymc((graphs.joined,), (logp, grad), mode="NUMBA")


def _record_words(record_dtype: np.dtype, keys: list[str]) -> dict | None:
    """Where each datum's address, size and shape sit in nutpie's ``user_data``
    record, in 8-byte words: ``{(part, key): word}``, or None if the record is not
    made of 8-byte words (another nutpie's layout)."""
    try:
        shared, base = record_dtype.fields["shared"]
        words = {}
        for part in ("data", "size", "shape"):
            part_dtype, part_offset = shared.fields[part]
            for key in keys:
                field_dtype, offset = part_dtype.fields[key][:2]
                offset += base + part_offset
                if offset % 8 or field_dtype.base.itemsize != 8:
                    return None
                words[part, key] = offset // 8
    except (KeyError, TypeError, ValueError):
        return None
    return words if record_dtype.itemsize % 8 == 0 else None


def _extraction_fn(inner, shared_data: dict, keys: list[str], record_dtype: np.dtype):
    """``inner(x, *shared)`` with the shared data read from nutpie's ``user_data``.

    Does what ``nutpie.compile_pymc.make_extraction_fn`` does, in straight-line code:
    every field of nutpie's record (each datum's address, size and shape) is an
    8-byte word at an offset known here, so the callback reads words at constant
    positions instead of typing the record's named fields once per datum (about
    0.2 s of numba's first compile per datum, 3 s for a model's two callbacks).
    nutpie's ``with_data`` writes the same record, so data set later are read.
    """
    if not keys:

        @numba.njit(inline="always")
        def extract_none(x, user_data_):
            return inner(x)

        return extract_none

    words = _record_words(record_dtype, keys)
    if words is None:  # a layout this code does not know: nutpie's own extraction
        return _np.make_extraction_fn(inner, shared_data, keys, record_dtype)
    lines = [
        "def extract(x, user_data_):",
        f"    w = carray(user_data_, ({record_dtype.itemsize // 8},), uint64)",
    ]
    names = []
    env = {
        "carray": numba.carray,
        "uint64": np.uint64,
        "pointer": _np.address_as_void_pointer,
        "inner": inner,
    }
    for i, key in enumerate(keys):
        value = shared_data[key]
        shape_at = words["shape", key]
        shape = ", ".join(f"int(w[{shape_at + d}])" for d in range(value.ndim))
        env[f"dtype{i}"] = value.dtype
        lines.append(
            f"    a{i} = carray(pointer(w[{words['data', key]}]), int(w[{words['size', key]}]),"
            f" dtype{i}).reshape(({shape}{',' if value.ndim == 1 else ''}))"
        )
        names.append(f"a{i}")
    lines.append(f"    return inner(x, {', '.join(names)})")
    exec(compile("\n".join(lines), "<scleromx_bayes.native extraction>", "exec"), env)  # noqa: S102
    return numba.njit(inline="always")(env["extract"])


_LOGP_SIGNATURE = numba.types.int64(
    numba.types.uint64,
    numba.types.CPointer(numba.types.double),
    numba.types.CPointer(numba.types.double),
    numba.types.CPointer(numba.types.double),
    numba.types.voidptr,
)
_EXPAND_SIGNATURE = numba.types.int64(
    numba.types.uint64,
    numba.types.uint64,
    numba.types.CPointer(numba.types.double),
    numba.types.CPointer(numba.types.double),
    numba.types.voidptr,
)


def _logp_callback(extract):
    """nutpie's log-density callback without its size baked in: nutpie passes the
    position's length, and a gradient of another length is an error (code 1)."""

    def logp_numba(dim, x_, out_, logp_, user_data_):
        try:
            x = numba.carray(x_, (dim,))
            out = numba.carray(out_, (dim,))
            logp = numba.carray(logp_, ())
            logp_val, grad = extract(x, user_data_)
            if grad.shape[0] != dim:
                return 1
            logp[()] = logp_val
            # element by element: numba's array assignment and np.all cost seconds of
            # its first compile (broadcasting, error messages) for the same result
            finite = True
            for i in range(dim):
                out[i] = grad[i]
                finite = finite and np.isfinite(grad[i])
            if not finite:
                return 3
            if not np.isfinite(logp_val):
                return 4
        except Exception:  # noqa: BLE001 - nutpie's own codes: any error is 1
            return 1
        return 0

    return logp_numba, _LOGP_SIGNATURE


def _copy(dim, expanded, x_, out_, user_data_):
    """nutpie's expansion callback when the stored variables are computed after
    sampling (:mod:`derived`): the position, copied."""
    if expanded != dim:
        return -1
    x = numba.carray(x_, (dim,))
    out = numba.carray(out_, (expanded,))
    for i in range(dim):
        out[i] = x[i]
    return 0


def _copy_callback() -> CFunc:
    """The expansion callback of every model: one code, compiled once per machine."""
    return _cfunc(_copy, _EXPAND_SIGNATURE, _key("copy", "position"))


@dataclass
class _SharedData:
    """The shared data (pm.Data) as nutpie lays it out for the callbacks."""

    shared_data: dict  # nutpie's key -> the datum's value
    shared_var_keys: dict  # shared variable -> nutpie's key
    user_data: np.ndarray  # the record the callbacks read
    logp_layout: tuple  # what the log density's code depends on: ranks and types


def _shared_data(logp_shared: list, derived_shared: Iterable) -> _SharedData:
    """nutpie's layout of the data the log density reads, in its order, and of the
    data only the stored variables read (so that ``with_data`` sets them too)."""
    shared_data, shared_var_keys = {}, {}
    for val in [*logp_shared, *derived_shared]:
        if val in shared_var_keys:
            continue
        key = _np.uuid4().hex
        shared_data[key] = np.array(val.get_value(), order="C", copy=True)
        shared_var_keys[val] = key
    for val in shared_data.values():
        val.flags.writeable = False

    def layout(variables):
        # what the compiled code depends on: each datum's rank and type, in order
        return tuple(
            (shared_data[shared_var_keys[var]].ndim, shared_data[shared_var_keys[var]].dtype.str)
            for var in variables
        )

    return _SharedData(
        shared_data=shared_data,
        shared_var_keys=shared_var_keys,
        user_data=_np.make_user_data(shared_var_keys, shared_data),
        logp_layout=(layout(logp_shared), layout(shared_var_keys)),
    )


@dataclass
class _Callbacks:
    """nutpie's two compiled callbacks and the shared data they read."""

    logp: CFunc
    copy: CFunc
    logp_shared: list  # the shared variables the log density reads, in its order
    logp_graph: str | None  # PyTensor's cache key of the log density's graph
    data: _SharedData
    logp_fn: object = None  # PyTensor's function, when compiled in this process


def _compile_callbacks(model, graphs: _Graphs, derived: DerivedVariables) -> _Callbacks:
    """Rewrite and compile the log density's graph, and make its callback (machine
    code compiled, or loaded from disk under PyTensor's key of the graph)."""
    logp_fn = _compile_graphs(model, graphs)
    logp_shared, logp_graph = list(logp_fn.get_shared()), _graph_key(logp_fn)
    data = _shared_data(logp_shared, derived.data)
    keys = [data.shared_var_keys[v] for v in logp_shared]
    extract = _extraction_fn(logp_fn.vm.jit_fn, data.shared_data, keys, data.user_data.dtype)
    raw, signature = _logp_callback(extract)
    logp = _cfunc(raw, signature, _key("logp", logp_graph, *data.logp_layout))
    return _Callbacks(logp, _copy_callback(), logp_shared, logp_graph, data, logp_fn)


def _graphs_entry(model, graphs: _Graphs) -> Path | None:
    """Where the compiled code of a log density like this one is recorded, by a
    digest of its graph before rewriting (:mod:`scleromx_bayes.graph_fingerprint`)
    and of what else rewriting and compiling depend on; None when the graph cannot
    be keyed."""
    try:
        digest = fingerprint(
            [graphs.logp, *graphs.replacements.values()],
            [graphs.joined, *graphs.value_vars],
        )
    except Unkeyable:
        return None
    config = pytensor.config
    flags = [
        getattr(config, name, None)
        for name in (
            "numba__fastmath",
            "numba__cache",
            "floatX",
            "cast_policy",
            "optimizer_excluding",
            "optimizer_including",
            "optimizer_requiring",
        )
    ]
    # _key adds the format, the CPU and the numba, llvmlite, PyTensor and nutpie versions
    key = _key("graphs", digest, model.check_bounds, flags, version("pymc"), _SOURCE)
    return cache_directory() / f"{key}.json"


def _remember(entry: Path, callbacks: _Callbacks) -> None:
    """Record which compiled code the log density is, and which shared data it
    reads, by name (written atomically; a graph PyTensor did not key, or shared data
    without unique names, is not recorded)."""
    names = [v.name for v in callbacks.logp_shared]
    if callbacks.logp_graph is None or not all(names) or len(set(names)) != len(names):
        return
    record = {"logp_graph": callbacks.logp_graph, "logp_shared": names}
    _write_atomically(entry, json.dumps(record).encode())


def _reuse(entry: Path, graphs: _Graphs, derived: DerivedVariables) -> _Callbacks | None:
    """The callbacks of a log density recorded at ``entry``, loaded from disk
    without rewriting or compiling anything; None when the record or the code is
    missing or damaged (the caller then compiles)."""
    try:
        record = json.loads(entry.read_text())
        by_name = shared_variables([graphs.logp, *graphs.replacements.values()])
        logp_shared = [by_name[n] for n in record["logp_shared"]]
        logp_graph = str(record["logp_graph"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    data = _shared_data(logp_shared, derived.data)
    key = _key("logp", logp_graph, *data.logp_layout)
    logp = _cfunc(_never_compiled, _LOGP_SIGNATURE, key, stored_only=True)
    if logp is None:
        return None
    return _Callbacks(logp, _copy_callback(), logp_shared, logp_graph, data)


@dataclass(frozen=True)
class PositionsModel(_np.CompiledPyMCModel):
    """nutpie's compiled PyMC model whose sampler stores each draw's position (the
    free parameters' unconstrained values); :attr:`derived` computes the variables a
    fit stores from them (:func:`scleromx_bayes.trace.trace_tree` does)."""

    derived: DerivedVariables | None = field(default=None, kw_only=True)

    def derived_data(self) -> dict:
        """The value of each datum :attr:`derived` reads, as set by ``with_data``."""
        return {var: self.shared_data[self.shared_var_keys[var]] for var in self.derived.data}


def compile_for_nutpie(model, var_names: Iterable[str] | None = None) -> PositionsModel:
    """``nutpie.compile_pymc_model(model, var_names=...)`` for the numba backend,
    with its log density's compiled code kept on disk between processes, and the
    stored variables computed after sampling.

    Parameters
    ----------
    model : pymc.Model
        The model to compile.
    var_names : iterable of str, optional
        Variables to store besides the free parameters (all when None), as in nutpie.

    Returns
    -------
    PositionsModel
        nutpie's compiled model, with ``with_data``. Sample it with
        :func:`scleromx_bayes.trace.sample_tree`, which computes the stored
        variables from the draws; ``nutpie.sample`` alone would return the
        positions only (and drop the transformed ones as nutpie's own names).

    Examples
    --------
    >>> import pymc as pm
    >>> from scleromx_bayes.native import compile_for_nutpie
    >>> from scleromx_bayes.trace import sample_tree
    >>> with pm.Model() as m:
    ...     sd = pm.HalfNormal("sd", 1.0)
    >>> compiled = compile_for_nutpie(m)
    >>> compiled.n_dim, compiled.derived.names
    (1, ('sd',))
    >>> tree = sample_tree(compiled, draws=20, tune=20, chains=1, seed=1, progress_bar=False)
    >>> bool((tree["posterior"]["sd"] > 0).all())
    True
    """
    from pymc.initial_point import make_initial_point_fn

    # as nutpie.compile_pymc_model with its defaults: support point, jittered
    initial_point_fn = make_initial_point_fn(
        model=model,
        overrides=None,
        default_strategy="support_point",
        jitter_rvs=set(model.free_RVs),
        return_transformed=True,
    )
    initial_point_fn = _np._wrap_with_lock(initial_point_fn)

    var_names = None if var_names is None else list(var_names)
    graphs = _graphs(model)
    derived = derived_variables(model, var_names)
    initial_point_fn = _np._rv_dict_to_flat_array_wrapper(
        initial_point_fn, names=graphs.names, shapes=graphs.concrete_shapes
    )
    entry = _graphs_entry(model, graphs)
    callbacks = _reuse(entry, graphs, derived) if entry is not None else None
    if callbacks is None:
        callbacks = _compile_callbacks(model, graphs, derived)
        if entry is not None:
            _remember(entry, callbacks)
    else:
        _stats["graphs_reused"] += 1
    # transformed values, named after their transform
    renamed = [p for p in derived.positions if p not in derived.copied]
    # dims of everything stored (nutpie gives the positions those of their variable)
    stored = _stored_layout(graphs, derived)
    dims, coords = _np._prepare_dims_and_coords(model, stored, renamed)
    positions = (graphs.names, graphs.slices, graphs.concrete_shapes)
    return PositionsModel(
        _n_dim=graphs.n_dim,
        dims=dims,
        _coords=coords,
        _shapes={name: tuple(shape) for name, _, shape in zip(*positions, strict=True)},
        compiled_logp_func=callbacks.logp,
        compiled_expand_func=callbacks.copy,
        initial_point_func=initial_point_fn,
        shared_data=callbacks.data.shared_data,
        shared_var_keys=callbacks.data.shared_var_keys,
        user_data=callbacks.data.user_data,
        n_expanded=graphs.n_dim,
        shape_info=positions,
        logp_func=callbacks.logp_fn,  # None when the graph was not compiled here
        expand_func=None,
        reparameterized_names=renamed,
        derived=derived,
    )
