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

Loaded code is the code that was compiled, byte for byte, so a fit's draws do not
depend on whether its callbacks were compiled now or loaded
(``tests/test_reproducibility.py`` checks it across processes).

This uses nutpie's internal building blocks (``nutpie.compile_pymc``), so nutpie
is pinned to a minor version in ``pyproject.toml``; a test compares the cached
path with ``nutpie.compile_pymc_model`` draw for draw.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
import threading
from collections.abc import Callable, Iterable
from importlib.metadata import version
from pathlib import Path

import numba
import numpy as np
import pytensor
from numba.core import compiler, registry
from numba.core.ccallback import CFunc
from nutpie import compile_pymc as _np
from pytensor.link.numba.cache import CACHED_SRC_FUNCTIONS

__all__ = ["cache_directory", "compile_for_nutpie", "forget_loaded", "native_cache_stats"]

_FORMAT = 1  # bump when what is stored changes
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


def _cfunc(pyfunc: Callable, sig, key: str | None) -> CFunc:
    """``numba.cfunc(sig)(pyfunc)``, through the disk cache when ``key`` is given."""
    if key is None:
        _stats["uncached"] += 1
        return numba.cfunc(sig)(pyfunc)
    with _lock:
        if key in _loaded:
            return _loaded[key]
        callback = CFunc(pyfunc, (sig.args, sig.return_type), {}, {})
        cache = _KeyedCache(cache_directory() / f"{key}.nbc")
        callback._cache = cache
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
        _np._make_functions(
            model,
            mode="NUMBA",
            compute_grad=True,
            join_expanded=True,
            pymc_initial_point_fn=initial_point_fn,
            var_names=var_names,
        )
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
    logp_raw, logp_sig = _np._make_c_logp_func(
        n_dim,
        logp_fn_pt.vm.jit_fn,
        user_data,
        [shared_var_keys[v] for v in logp_shared],
        shared_data,
    )
    logp = _cfunc(
        logp_raw,
        logp_sig,
        _key("logp", _graph_key(logp_fn_pt), n_dim, layout(logp_shared), all_layout),
    )

    expand_shared = list(expand_fn_pt.get_shared())
    expand_raw, expand_sig = _np._make_c_expand_func(
        n_dim,
        n_expanded,
        expand_fn_pt.vm.jit_fn,
        user_data,
        [shared_var_keys[v] for v in expand_shared],
        shared_data,
    )
    expand = _cfunc(
        expand_raw,
        expand_sig,
        _key(
            "expand", _graph_key(expand_fn_pt), n_dim, n_expanded, layout(expand_shared), all_layout
        ),
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
