"""Compile a PyMC model for nutpie, keeping the compiled machine code on disk.

nutpie's numba backend wraps the model's log density (and the function that
expands a draw into the stored variables) in two ``numba.cfunc`` callbacks.
PyTensor caches the numba code of the graph itself, but nutpie's callbacks are
compiled again in every process: about 9 of the 10 seconds of a first fit, paid
again by every CLI call, worker process, notebook kernel and test process.

:func:`compile_for_nutpie` does what ``nutpie.compile_pymc_model`` does for the
numba backend, with one difference: each callback's compiled object code is
stored under PyTensor's compile directory (``<base_compiledir>/scleromx_bayes``),
keyed by everything that determines it: PyTensor's own cache key of the graph
(which includes its constants and the fast-math flag), the callback's sizes and
data layout, the versions of numba, llvmlite, PyTensor and nutpie, and the CPU.
A process that finds the key loads the object code (milliseconds) instead of
compiling it. A graph PyTensor cannot key is compiled as nutpie would, uncached.
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
data, like the counts): one compiled log density and one expansion serve every
cohort of a structure, whatever its numbers of regimens, sites and cells (a new size
costs the PyTensor graph, about a second, not numba's 10-30 s). The price is paid
per gradient: shapes known only at run time cost about 15% more per evaluation
on the example (base 3.9 -> 4.5 us, EXNEX 7.4 -> 8.6 us).

This uses nutpie's internal building blocks (``nutpie.compile_pymc``), so nutpie
is pinned to a minor version in ``pyproject.toml``; tests compare the cached path
with ``nutpie.compile_pymc_model``: draw for draw for a model without dims, log
density and gradient to 1e-13 for one with dims (whose fused arithmetic may round
differently in the last bit).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import tempfile
import threading
from collections.abc import Callable, Iterable
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
from pytensor.link.numba.cache import CACHED_SRC_FUNCTIONS

__all__ = ["cache_directory", "compile_for_nutpie", "forget_loaded", "native_cache_stats"]

_FORMAT = 3  # bump when what is stored changes
_loaded: dict[str, CFunc] = {}  # a key's code is loaded at most once per process
_lock = threading.Lock()
_stats = {"compiled": 0, "loaded": 0, "uncached": 0}


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
    uncached (a graph PyTensor could not key).

    Returns
    -------
    dict of str to int
        Counts under ``compiled``, ``loaded`` and ``uncached``.

    Examples
    --------
    >>> from scleromx_bayes.native import native_cache_stats
    >>> sorted(native_cache_stats())
    ['compiled', 'loaded', 'uncached']
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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = pickle.dumps(cres._reduce(), protocol=pickle.HIGHEST_PROTOCOL)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, self.path)  # atomic: a reader sees all of it or nothing
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


def _cfunc(pyfunc: Callable, sig, key: str | None) -> CFunc:
    """``numba.cfunc(sig)(pyfunc)``, through the disk cache when ``key`` is given."""
    if key is None:
        _stats["uncached"] += 1
        return numba.cfunc(sig)(pyfunc)
    with _lock:
        if key in _loaded:
            return _loaded[key]
        callback = CFunc(pyfunc, (sig.args, sig.return_type), {}, {})
        callback._cache = _KeyedCache(cache_directory() / f"{key}.nbc")
        with _compiling(key):  # another process compiling this key: wait, then load
            callback.compile()
        _stats["loaded" if callback.cache_hits else "compiled"] += 1
        _loaded[key] = callback
        return callback


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


def _make_functions(model, pymc_initial_point_fn, var_names):
    """nutpie's ``_make_functions`` (numba mode, gradient, one expanded vector), with
    the position vector of any length and the parameters' slices of it computed from
    the dimension lengths: the graph, and so its compiled code, does not depend on
    the numbers of regimens, sites or cells (nutpie bakes them in as constants)."""
    from pymc.pytensorf import compile as compile_pymc
    from pytensor.graph import clone_replace, rewrite_graph

    shapes = _np._compute_shapes(model)
    value_vars = [model.rvs_to_values[rv] for rv in model.free_RVs]
    logp = model.logp()
    rewrites = ["canonicalize", "stabilize"]
    if not model.check_bounds:
        rewrites.append("local_remove_check_parameter")
    logp = rewrite_graph(logp, include=rewrites)
    grads = pt.grad(logp, value_vars)
    grad = pt.concatenate([pt.as_tensor(g, allow_xtensor_conversion=True).ravel() for g in grads])

    joined = pt.TensorType("float64", shape=(None,))(name="_unconstrained_point")
    names, slices, concrete_shapes, replacements, pieces = [], [], [], {}, []
    count, start = 0, pt.constant(0, dtype="int64")
    for rv, value in zip(model.free_RVs, value_vars, strict=True):
        concrete = tuple(shapes[value.name])
        shape = _value_shape(model, rv, concrete)
        length = pt.as_tensor(1, dtype="int64")
        for n in shape:
            length = length * n
        piece = joined[start : start + length]
        start = start + length
        pieces.append(piece)
        replacements[value] = piece.reshape(shape).astype(rv.dtype)
        names.append(value.name)
        concrete_shapes.append(concrete)
        size = int(np.prod(concrete, dtype=int))
        slices.append(slice(count, count + size))
        count += size
    n_dim = count
    initial_point_fn = _np._rv_dict_to_flat_array_wrapper(
        pymc_initial_point_fn, names=names, shapes=concrete_shapes
    )
    logp, grad = clone_replace([logp, grad], replacements)
    with model:
        logp_fn = compile_pymc((joined,), (logp, grad), mode="NUMBA")
    renamed = [
        model.rvs_to_values[rv].name
        for rv in model.free_RVs
        if model.rvs_to_transforms.get(rv) is not None
    ]

    remaining = [v for v in model.unobserved_value_vars if v.name not in names]
    if var_names is not None:
        wanted = set(var_names)
        remaining = [v for v in remaining if v.name in wanted]
    all_names, all_slices, all_shapes = list(names), list(slices), list(concrete_shapes)
    for var in remaining:
        shape = tuple(shapes[var.name])
        size = int(np.prod(shape, dtype=int))
        all_names.append(var.name)
        all_shapes.append(shape)
        all_slices.append(slice(count, count + size))
        count += size
    expanded = pt.concatenate(
        [
            *[p.ravel() for p in pieces],
            *[pt.as_tensor(v, allow_xtensor_conversion=True).ravel() for v in remaining],
        ]
    )
    with model:
        expand_fn = compile_pymc(
            (joined,), [expanded], givens=list(replacements.items()), mode="NUMBA"
        )
    return (
        n_dim,
        count,
        logp_fn,
        expand_fn,
        initial_point_fn,
        (all_names, all_slices, all_shapes),
        renamed,
    )


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


def _logp_callback(extract):
    """nutpie's log-density callback without its size baked in: nutpie passes the
    position's length, and a gradient of another length is an error (code 1)."""
    c_sig = numba.types.int64(
        numba.types.uint64,
        numba.types.CPointer(numba.types.double),
        numba.types.CPointer(numba.types.double),
        numba.types.CPointer(numba.types.double),
        numba.types.voidptr,
    )

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

    return logp_numba, c_sig


def _expand_callback(extract):
    """nutpie's expansion callback without its sizes baked in (as above)."""
    c_sig = numba.types.int64(
        numba.types.uint64,
        numba.types.uint64,
        numba.types.CPointer(numba.types.double),
        numba.types.CPointer(numba.types.double),
        numba.types.voidptr,
    )

    def expand_numba(dim, expanded, x_, out_, user_data_):
        try:
            x = numba.carray(x_, (dim,))
            out = numba.carray(out_, (expanded,))
            (values,) = extract(x, user_data_)
            if values.shape[0] != expanded:
                return -1
            for i in range(expanded):  # as in the log density's callback
                out[i] = values[i]
        except Exception:  # noqa: BLE001
            return -2
        return 0

    return expand_numba, c_sig


def compile_for_nutpie(model, var_names: Iterable[str] | None = None):
    """``nutpie.compile_pymc_model(model, var_names=...)`` for the numba backend,
    with its two compiled callbacks kept on disk between processes.

    Parameters
    ----------
    model : pymc.Model
        The model to compile.
    var_names : iterable of str, optional
        Variables to store in the trace (all when None), as in nutpie.

    Returns
    -------
    nutpie.compile_pymc.CompiledPyMCModel
        The same object nutpie returns, ready for ``nutpie.sample`` and ``with_data``.

    Examples
    --------
    >>> import pymc as pm, nutpie
    >>> from scleromx_bayes.native import compile_for_nutpie
    >>> with pm.Model() as m:
    ...     x = pm.Normal("x", 0.0, 1.0)
    >>> compiled = compile_for_nutpie(m)
    >>> compiled.n_dim
    1
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

    (n_dim, n_expanded, logp_fn_pt, expand_fn_pt, initial_point_fn, shape_info, renamed) = (
        _make_functions(model, initial_point_fn, var_names)
    )

    # the shared data (pm.Data) as nutpie lays it out for the callbacks
    shared_data, shared_var_keys, seen = {}, {}, set()
    for val in [*logp_fn_pt.get_shared(), *expand_fn_pt.get_shared()]:
        if val in seen:
            continue
        key = _np.uuid4().hex
        shared_data[key] = np.array(val.get_value(), order="C", copy=True)
        shared_var_keys[val] = key
        seen.add(val)
    for val in shared_data.values():
        val.flags.writeable = False
    user_data = _np.make_user_data(shared_var_keys, shared_data)

    def layout(variables):
        # what the compiled code depends on: each datum's rank and type, in order
        return tuple(
            (shared_data[shared_var_keys[var]].ndim, shared_data[shared_var_keys[var]].dtype.str)
            for var in variables
        )

    all_layout = layout(shared_var_keys)
    logp_shared = list(logp_fn_pt.get_shared())
    logp_raw, logp_sig = _logp_callback(
        _extraction_fn(
            logp_fn_pt.vm.jit_fn,
            shared_data,
            [shared_var_keys[v] for v in logp_shared],
            user_data.dtype,
        )
    )
    logp = _cfunc(
        logp_raw, logp_sig, _key("logp", _graph_key(logp_fn_pt), layout(logp_shared), all_layout)
    )

    expand_shared = list(expand_fn_pt.get_shared())
    expand_raw, expand_sig = _expand_callback(
        _extraction_fn(
            expand_fn_pt.vm.jit_fn,
            shared_data,
            [shared_var_keys[v] for v in expand_shared],
            user_data.dtype,
        )
    )
    expand = _cfunc(
        expand_raw,
        expand_sig,
        _key("expand", _graph_key(expand_fn_pt), layout(expand_shared), all_layout),
    )

    dims, coords = _np._prepare_dims_and_coords(model, shape_info, renamed)
    return _np.CompiledPyMCModel(
        _n_dim=n_dim,
        dims=dims,
        _coords=coords,
        _shapes={name: tuple(shape) for name, _, shape in zip(*shape_info, strict=True)},
        compiled_logp_func=logp,
        compiled_expand_func=expand,
        initial_point_func=initial_point_fn,
        shared_data=shared_data,
        shared_var_keys=shared_var_keys,
        user_data=user_data,
        n_expanded=n_expanded,
        shape_info=shape_info,
        logp_func=logp_fn_pt,
        expand_func=expand_fn_pt,
        reparameterized_names=renamed,
    )
