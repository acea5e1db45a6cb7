"""nutpie's compiled callbacks kept on disk (native.py): same draws, right code."""

from __future__ import annotations

import ctypes
import dataclasses
import fcntl
import json
import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import nutpie
import pymc as pm
import pytensor
import pytest

from scleromx_bayes import native
from scleromx_bayes.model import exact_float_math
from scleromx_bayes.trace import sample_tree


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    """An empty cache directory and no callbacks loaded yet in this process."""
    monkeypatch.setattr(native, "cache_directory", lambda: tmp_path / "nutpie")
    monkeypatch.setattr(native, "_loaded", {})
    return tmp_path / "nutpie"


def _model(mu: float, n: int = 3) -> pm.Model:
    with pm.Model(coords={"g": np.arange(n)}) as model:
        y = pm.Data("y", np.linspace(-1.0, 1.0, n))
        m = pm.Normal("m", mu, 2.0)
        s = pm.HalfNormal("s", 1.0)
        pm.Normal("obs", m, s, observed=y, dims="g")
    return model


def _sample(compiled, seed=3):
    return sample_tree(compiled, draws=100, tune=100, chains=2, seed=seed, progress_bar=False)


def _draws(compiled, seed=3) -> np.ndarray:
    return _sample(compiled, seed)["posterior"]["m"].values


def test_same_draws_as_nutpie_s_own_compile(private_cache):
    """The same path draw for draw: ``m`` (no transform) is stored as sampled, bit
    for bit; ``s`` is computed after sampling from its logarithm, by NumPy rather than
    by numba (an ulp apart at most)."""
    with exact_float_math():
        ours = native.compile_for_nutpie(_model(0.5))
        theirs = nutpie.compile_pymc_model(_model(0.5))
    a, b = _sample(ours)["posterior"], _sample(theirs)["posterior"]
    assert list(a.data_vars) == list(b.data_vars) == ["m", "s"]
    assert np.array_equal(a["m"].values, b["m"].values)
    np.testing.assert_array_max_ulp(a["s"].values, b["s"].values, maxulp=1)
    # the log density's code and the expansion's (a copy), and the record of which
    # code the model's log density is
    kinds = sorted(p.name.split("-")[0] for p in private_cache.iterdir())
    assert kinds == ["copy", "graphs", "logp"]


def test_loaded_code_gives_the_draws_of_compiled_code(private_cache, monkeypatch):
    with exact_float_math():
        compiled_now = native.compile_for_nutpie(_model(0.5))
        before = native.native_cache_stats()
        monkeypatch.setattr(native, "_loaded", {})  # as a new process would: from disk
        loaded = native.compile_for_nutpie(_model(0.5))
    after = native.native_cache_stats()
    assert after["loaded"] - before["loaded"] == 2
    assert after["compiled"] == before["compiled"]
    # the second model's graphs were recognised before rewriting: PyTensor compiled
    # nothing for it, and the code was loaded by the record's keys
    assert after["graphs_reused"] - before["graphs_reused"] == 1
    assert loaded.logp_func is None and compiled_now.logp_func is not None
    assert np.array_equal(_draws(compiled_now), _draws(loaded))
    # the loaded model takes new data like the compiled one
    a = _draws(compiled_now.with_data(y=np.array([3.0, 4.0, 5.0])))
    b = _draws(loaded.with_data(y=np.array([3.0, 4.0, 5.0])))
    assert np.array_equal(a, b)
    assert a.mean() > 2.5  # the data moved the posterior


def test_another_constant_is_another_entry(private_cache):
    # a prior mean written into the graph as a constant changes the compiled code:
    # the cache must not hand one model's code to the other
    with exact_float_math():
        a = native.compile_for_nutpie(_model(0.0))
        b = native.compile_for_nutpie(_model(50.0))
    kinds = sorted(p.name.split("-")[0] for p in private_cache.iterdir())
    # two log densities; one expansion (a copy of the draw, the same for every
    # model); two records of graphs: the constant is part of the graphs' digest too
    assert kinds == ["copy", "graphs", "graphs", "logp", "logp"]
    assert a.compiled_logp_func is not b.compiled_logp_func
    assert a.compiled_expand_func is b.compiled_expand_func
    x = np.array([0.3, 0.1])
    la, lb = np.empty(2), np.empty(2)
    out = np.empty(1)
    for compiled, grad in ((a, la), (b, lb)):
        fn = compiled.compiled_logp_func.ctypes
        ptr = ctypes.POINTER(ctypes.c_double)
        code = fn(
            2,
            x.ctypes.data_as(ptr),
            grad.ctypes.data_as(ptr),
            out.ctypes.data_as(ptr),
            compiled.user_data.ctypes.data,
        )
        assert code == 0
    # d logp / d m of the prior differs by (50 - 0) / 2**2 between the two models
    assert la[0] - lb[0] == pytest.approx(-50.0 / 4.0)


def test_another_data_layout_is_another_entry(private_cache):
    with exact_float_math():
        native.compile_for_nutpie(_model(0.0, n=3))
        native.compile_for_nutpie(_model(0.0, n=5))  # same graph, same ranks: shared
        with pm.Model() as other:  # a datum of another rank
            y = pm.Data("y", np.ones((2, 2)))
            m = pm.Normal("m", 0.0, 2.0)
            pm.Normal("obs", m, 1.0, observed=y)
        native.compile_for_nutpie(other)
    # a log density per layout of data, and the expansion every model shares (a copy)
    kinds = sorted(p.name.split("-")[0] for p in private_cache.glob("*.nbc"))
    assert kinds == ["copy", "logp", "logp"]
    # the two sizes are one graph (sizes are data); the datum of another rank is not
    assert len(list(private_cache.glob("graphs-*.json"))) == 2


def test_the_graphs_digest_describes_the_computation_not_the_process():
    """The digest native.py looks a model's compiled code up by, before rewriting:
    the same for the same computation built twice, different for another constant,
    operation, input order or shared variable, the same for other shared values
    (data); a part without a stable description is refused, not guessed."""
    import pytensor.tensor as pt

    from scleromx_bayes.graph_fingerprint import Unkeyable, fingerprint

    x, y = pt.vector("x"), pt.vector("y")
    data = pytensor.shared(np.ones(3), name="data")

    def digest(build, inputs=(x, y)):
        return fingerprint([build()], list(inputs))

    base = digest(lambda: pt.exp(x) * 2.0 + y * data)
    assert base == digest(lambda: pt.exp(x) * 2.0 + y * data)
    x2 = pt.vector("another name")  # inputs count by position, not by name
    assert base == fingerprint([pt.exp(x2) * 2.0 + y * data], [x2, y])
    assert base != digest(lambda: pt.exp(x) * 2.5 + y * data)  # another constant
    assert base != digest(lambda: pt.log(x) * 2.0 + y * data)  # another operation
    assert base != digest(lambda: pt.exp(x) * 2.0 + y * data, inputs=(y, x))  # order
    other = pytensor.shared(np.ones(3), name="other")
    assert base != digest(lambda: pt.exp(x) * 2.0 + y * other)  # another datum
    data.set_value(np.arange(3.0))
    assert base == digest(lambda: pt.exp(x) * 2.0 + y * data)  # values are data
    matrix = pytensor.shared(np.ones((3, 3)), name="data")
    assert base != digest(lambda: pt.exp(x) * 2.0 + (y * matrix).sum(0))  # another rank
    # EXNEX's logaddexp is an operation defined by an inner graph
    assert digest(lambda: pt.special.logaddexp(x, y)) != digest(lambda: pt.logaddexp(x, 2 * y))
    with pytest.raises(Unkeyable, match="not declared"):
        fingerprint([x + y], [x])
    with pytest.raises(Unkeyable, match="unnamed"):
        fingerprint([x * pytensor.shared(np.ones(3))], [x])
    with pytest.raises(Unkeyable, match="not unique"):
        fingerprint([x * data + (y * pytensor.shared(np.ones(3), name="data"))], [x, y])


def test_a_model_the_digest_cannot_describe_is_compiled_and_not_recorded(private_cache):
    with pm.Model() as model:
        m = pm.Normal("m", 0.0, 1.0)
        pm.Potential("unnamed datum", -((m - pytensor.shared(np.array(1.0))) ** 2))
    with exact_float_math():
        compiled = native.compile_for_nutpie(model)
    kinds = sorted(p.name.split("-")[0] for p in private_cache.iterdir())
    assert kinds == ["copy", "logp"]  # the callbacks' code, and no record of graphs
    draws = nutpie.sample(compiled, draws=200, tune=200, chains=2, seed=1, progress_bar=False)
    # prior N(0, 1) times exp(-(m - 1)^2): posterior N(2/3, 1/3); 0.15 is 4 MC SEs
    assert abs(float(draws["posterior"]["m"].mean()) - 2 / 3) < 0.15


def _vector_model(n: int) -> pm.Model:
    """A vector parameter with a dim, a datum of that dim, a stored deterministic."""
    with pm.Model(coords={"g": np.arange(n)}) as model:
        y = pm.Data("y", np.linspace(-1.0, 1.0, n), dims="g")
        mu = pm.Normal("mu", 0.0, 1.0)
        z = pm.Normal("z", 0.0, 1.0, dims="g")
        s = pm.HalfNormal("s", 1.0)
        pm.Normal("obs", mu + 0.5 * z, s, observed=y, dims="g")
        pm.Deterministic("shifted", mu + z, dims="g")
    return model


def _logp_and_grad(compiled, x: np.ndarray) -> tuple[float, np.ndarray]:
    ptr = ctypes.POINTER(ctypes.c_double)
    grad, out = np.empty_like(x), np.empty(1)
    code = compiled.compiled_logp_func.ctypes(
        x.size,
        x.ctypes.data_as(ptr),
        grad.ctypes.data_as(ptr),
        out.ctypes.data_as(ptr),
        compiled.user_data.ctypes.data,
    )
    assert code == 0
    return float(out[0]), grad


def test_models_of_every_size_share_one_compiled_code(private_cache, monkeypatch):
    """Sizes are data: the parameter vector and its slices are computed from the
    dims' lengths, so a model with more groups reuses the compiled callbacks; its
    log density and gradient are nutpie's own compile's for that size, and its draws
    do not depend on which size compiled the code."""
    with exact_float_math():
        small = native.compile_for_nutpie(_vector_model(3))
        before = native.native_cache_stats()
        large = native.compile_for_nutpie(_vector_model(7))
        after = native.native_cache_stats()
        theirs = nutpie.compile_pymc_model(_vector_model(7))
        monkeypatch.setattr(native, "_loaded", {})
        for entry in private_cache.iterdir():
            entry.unlink()
        own = native.compile_for_nutpie(_vector_model(7))  # compiled at this size
    # neither compiled nor loaded: this process holds the code; and the larger model's
    # graphs were recognised before rewriting (PyTensor compiled nothing for it)
    assert after == {**before, "graphs_reused": before["graphs_reused"] + 1}
    assert large.logp_func is None and small.logp_func is not None
    assert large.compiled_logp_func is small.compiled_logp_func
    assert large.compiled_expand_func is small.compiled_expand_func
    assert (small.n_dim, large.n_dim) == (5, 9)
    rng = np.random.default_rng(2)
    for _ in range(5):
        x = rng.normal(size=9)
        (ours_logp, ours_grad), (ref_logp, ref_grad) = (
            _logp_and_grad(large, x),
            _logp_and_grad(theirs, x),
        )
        assert ours_logp == pytest.approx(ref_logp, rel=1e-13)
        np.testing.assert_allclose(ours_grad, ref_grad, rtol=1e-13, atol=1e-13)
    # a position of another length is refused (an error code), not misread
    ptr = ctypes.POINTER(ctypes.c_double)
    short, grad, out = np.zeros(8), np.empty(8), np.empty(1)
    code = large.compiled_logp_func.ctypes(
        8,
        short.ctypes.data_as(ptr),
        grad.ctypes.data_as(ptr),
        out.ctypes.data_as(ptr),
        large.user_data.ctypes.data,
    )
    assert code != 0
    assert large.compiled_logp_func is not own.compiled_logp_func
    trace = sample_tree(large, draws=100, tune=100, chains=2, seed=4, progress_bar=False)
    again = sample_tree(own, draws=100, tune=100, chains=2, seed=4, progress_bar=False)
    for name in ("mu", "z", "s", "shifted"):
        assert np.array_equal(trace["posterior"][name].values, again["posterior"][name].values)
    assert trace["posterior"]["shifted"].shape == (2, 100, 7)
    np.testing.assert_allclose(
        trace["posterior"]["shifted"].values,
        trace["posterior"]["mu"].values[..., None] + trace["posterior"]["z"].values,
    )


def test_a_damaged_entry_is_compiled_again_and_replaced(private_cache, monkeypatch):
    with exact_float_math():
        good = native.compile_for_nutpie(_model(0.5))
        logp, copy = sorted(private_cache.glob("*.nbc"))[::-1]  # "logp-..." > "copy-..."
        logp.write_bytes(b"not a pickle")
        copy.write_bytes(pickle.dumps(("a pickle", "of something else")))
        monkeypatch.setattr(native, "_loaded", {})
        before = native.native_cache_stats()["compiled"]
        again = native.compile_for_nutpie(_model(0.5))
    # the graphs' record led to the damaged entries: the callbacks were compiled again
    assert native.native_cache_stats()["compiled"] - before == 2
    assert all(entry.stat().st_size > 1000 for entry in private_cache.glob("*.nbc"))
    assert np.array_equal(_draws(good), _draws(again))


def test_a_damaged_record_of_graphs_is_written_again(private_cache, monkeypatch):
    """A record that does not parse takes the compiling path (PyTensor rewrites and
    compiles the graphs, the callbacks load from their entries) and is replaced."""
    with exact_float_math():
        good = native.compile_for_nutpie(_model(0.5))
        (record,) = private_cache.glob("graphs-*.json")
        text = record.read_text()
        record.write_text("{not json")
        monkeypatch.setattr(native, "_loaded", {})
        before = native.native_cache_stats()
        again = native.compile_for_nutpie(_model(0.5))
    after = native.native_cache_stats()
    assert after["graphs_reused"] == before["graphs_reused"]
    assert (after["loaded"] - before["loaded"], after["compiled"] - before["compiled"]) == (2, 0)
    assert again.logp_func is not None  # compiled by PyTensor in this process
    assert json.loads(record.read_text()) == json.loads(text)
    assert np.array_equal(_draws(good), _draws(again))


_COMPILE_IN_A_NEW_PROCESS = """
import json, sys
from pathlib import Path
import numpy as np, pymc as pm
from scleromx_bayes import native
from scleromx_bayes.model import exact_float_math
native.cache_directory = lambda: Path(sys.argv[1])
with pm.Model(coords={"g": np.arange(3)}) as model:
    y = pm.Data("y", np.linspace(-1.0, 1.0, 3))
    m = pm.Normal("m", 0.5, 2.0)
    s = pm.HalfNormal("s", 1.0)
    pm.Normal("obs", m, s, observed=y, dims="g")
print("ready", flush=True)
with exact_float_math():
    native.compile_for_nutpie(model)
print(json.dumps(native.native_cache_stats()), flush=True)
"""


def _new_process(cache: Path) -> subprocess.Popen:
    """A process compiling a small model with ``cache`` as its callbacks' cache
    (PyTensor's own compile directory is the suite's: only our cache is new)."""
    return subprocess.Popen(
        [sys.executable, "-c", _COMPILE_IN_A_NEW_PROCESS, str(cache)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _opens_one_of(process: subprocess.Popen, paths: set[str]) -> bool:
    """Wait until ``process`` holds one of ``paths`` open (Linux's /proc); False if it
    ends first."""
    fds = Path(f"/proc/{process.pid}/fd")
    while process.poll() is None:
        for fd in fds.iterdir():
            try:
                if os.readlink(fd) in paths:
                    return True
            except OSError:  # closed meanwhile
                continue
        time.sleep(0.01)
    return False


def test_a_process_waits_for_another_compiling_the_same_code(tmp_path, monkeypatch):
    """Two processes reaching one structure's first compile at once compile it once:
    while one holds a key's lock, the other waits and then loads what it stored.
    Here the test holds the locks (as a compiling process would), lets a new process
    reach its compile, stores the entries (compiled earlier, elsewhere) and lets go:
    the new process loads both callbacks and compiles none. Without the lock it would
    have found no entry and compiled both."""
    first = _new_process(tmp_path / "a")
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    assert json.loads(out.splitlines()[-1])["compiled"] == 2
    entries = sorted((tmp_path / "a").glob("*.nbc"))
    assert [e.name.split("-")[0] for e in entries] == ["copy", "logp"]

    cache = tmp_path / "b"
    monkeypatch.setattr(native, "cache_directory", lambda: cache)
    locks = []
    for entry in entries:
        path = native._lock_path(entry.stem)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a")  # noqa: SIM115 - held across the wait below
        fcntl.flock(handle, fcntl.LOCK_EX)
        locks.append(handle)
    second = _new_process(cache)
    try:
        assert second.stdout.readline().strip() == "ready"
        assert _opens_one_of(second, {str(native._lock_path(e.stem)) for e in entries})
        time.sleep(0.5)  # from opening the lock file to waiting on it: microseconds
        assert second.poll() is None, "the new process did not wait for the lock"
        cache.mkdir(parents=True, exist_ok=True)
        for entry in entries:
            shutil.copy(entry, cache / entry.name)
    finally:
        for handle in locks:
            handle.close()  # lets go of the lock
    out, err = second.communicate(timeout=600)
    assert second.returncode == 0, err
    stats = json.loads(out.splitlines()[-1])
    assert stats == {"compiled": 0, "loaded": 2, "uncached": 0, "graphs_reused": 0}
    assert sorted(p.name for p in cache.glob("*.nbc")) == [e.name for e in entries]
    assert len(list(cache.glob("graphs-*.json"))) == 1  # recorded for the next process


def test_the_cache_lives_in_pytensor_s_compile_directory():
    assert native.cache_directory().is_relative_to(pytensor.config.base_compiledir)


def _exnex_model():
    """The shared graph compiled_for compiles for the example under EXNEX, with the
    canonical data it compiles with (its stored variables need every batched form
    derived.py writes: softplus, scatter-adds, inner graphs, joins)."""
    import scleromx_bayes as sxb
    from scleromx_bayes.model import build_model, canonical_value, scalar_values
    from scleromx_bayes.model import names as v

    cells, spec = sxb.load_example().cells(), sxb.load_spec("exnex")
    model = build_model(cells, spec, shared=True)
    names = list(scalar_values(cells, spec, shared=True))
    with model:
        pm.set_data({v.MODEL_SCALARS: np.array([canonical_value(n) for n in names])})
    return cells, spec, model


def test_trace_tree_is_what_nutpie_returns():
    """For a model whose draws nutpie stores as they are (here a fit's compiled
    model storing its positions, nothing computed or dropped), trace_tree builds the
    posterior and sample_stats nutpie's own conversion builds (warm-up and text
    statistics aside): the same variables, values, dtypes, dims, coordinates and
    attributes but the creation time."""
    import xarray as xr

    from scleromx_bayes.fit import _for_cells, compiled_for
    from scleromx_bayes.trace import trace_tree

    cells, spec, _ = _exnex_model()
    (compiled, scalar_names), _ = compiled_for(cells, spec, None)
    compiled = _for_cells(compiled, scalar_names, cells, spec, None)  # the example's labels
    compiled = dataclasses.replace(compiled, derived=None, reparameterized_names=[])
    kwargs = {"draws": 50, "tune": 60, "chains": 2, "seed": 9, "progress_bar": False}
    theirs = nutpie.sample(compiled, **kwargs)
    running = nutpie.sample(compiled, **kwargs, blocking=False, return_raw_trace=True)
    ours = trace_tree(running.wait(), compiled, running._settings.as_dict())
    assert set(ours.children) == {"posterior", "sample_stats"}
    for group in ("posterior", "sample_stats"):
        a, b = ours[group].to_dataset(), theirs[group].to_dataset()
        b = b.drop_vars([n for n in b.data_vars if b[n].dtype == object])
        for ds in (a, b):
            ds.attrs.pop("created_at")
        xr.testing.assert_identical(a, b)
        assert all(a[n].dtype == b[n].dtype for n in a.data_vars)
    assert ours["posterior"]["site_z"].dims == ("chain", "draw", "site")
    assert list(ours["posterior"]["site_z"]["site"].values) == list(cells.sites)
    assert "regimen_sd_log__" in ours["posterior"] and "diverging" in ours["sample_stats"]


def test_stored_variables_computed_after_sampling_are_nutpie_s_expansion():
    """A fit's model stores positions; trace_tree computes the stored variables from
    all of them at once (derived.py). Against nutpie's own expansion of each of the
    same draws (its PyTensor graph, compiled by numba): the same variables in the
    same order, dims and dtypes; the free parameters without a transform the same
    bits; the rest the same function computed by NumPy instead of numba's fused
    loops (measured: within 3e-14 relative)."""
    from scleromx_bayes.fit import _for_cells, compiled_for
    from scleromx_bayes.model import data_values, stored_names

    cells, spec, model = _exnex_model()
    # the compiled model of this structure, which another test's cohort may have
    # compiled, with the example's data; the reference graph with the same
    (compiled, scalar_names), _ = compiled_for(cells, spec, None)
    compiled = _for_cells(compiled, scalar_names, cells, spec, None)
    with model:
        pm.set_data(data_values(cells, spec, shared=True))
    kwargs = {"draws": 40, "tune": 60, "chains": 2, "seed": 9, "progress_bar": False}
    ours = sample_tree(compiled, **kwargs)["posterior"]
    # the same run, as stored: the positions, nothing computed or dropped
    as_stored = dataclasses.replace(compiled, derived=None, reparameterized_names=[])
    positions = sample_tree(as_stored, **kwargs)["posterior"]
    assert set(positions.data_vars) == set(compiled.derived.positions)
    with exact_float_math():
        _, _, _, expand, _, (names, slices, shapes), renamed = nutpie.compile_pymc._make_functions(
            model,
            mode="NUMBA",
            compute_grad=True,
            join_expanded=True,
            pymc_initial_point_fn=None,
            var_names=stored_names(model),
        )
    stored = [n for n in names if n not in renamed]
    assert list(ours.data_vars) == stored
    x = np.concatenate(
        [positions[n].values.reshape(2, 40, -1) for n in compiled.derived.positions], axis=-1
    )
    reference = np.stack([np.asarray(expand(point)).ravel() for point in x.reshape(80, -1)])
    for name, where, shape in zip(names, slices, shapes, strict=True):
        if name in renamed:
            continue
        expected = reference[:, where].reshape(2, 40, *shape)
        got = ours[name]
        assert got.dims[2:] == tuple(model.named_vars_to_dims.get(name, ()))
        assert got.dtype == np.float64
        if name in compiled.derived.copied:
            assert np.array_equal(got.values, expected), name
        else:
            np.testing.assert_allclose(got.values, expected, rtol=1e-12, atol=1e-14, err_msg=name)
    assert {"exchangeability_weight", "regimen_logit", "typical_logit"} <= set(stored)
    assert not set(compiled.derived.copied) & set(renamed)


def test_the_callbacks_read_nutpie_s_record_at_its_own_offsets():
    """The callbacks read each datum's address, size and shape from nutpie's
    ``user_data`` record at word offsets computed from its dtype: those words are
    the record's own fields (0-d, 1-d and 2-d data; after ``update_user_data`` too),
    and a record not made of 8-byte words is left to nutpie's own extraction."""
    from nutpie import compile_pymc as nutpie_internals

    data = {
        "scalar": np.array(4, dtype=np.int64),
        "counts": np.arange(5.0),
        "index": np.arange(6, dtype=np.int64).reshape(3, 2),
    }
    keys = {pytensor.shared(value, name=name): name for name, value in data.items()}
    record = nutpie_internals.make_user_data(keys, data)
    words = native._record_words(record.dtype, list(data))
    assert words is not None
    for fresh in (False, True):
        if fresh:  # what with_data does: new arrays written into a copy of the record
            data = {name: value.copy() for name, value in data.items()}
            record = nutpie_internals.update_user_data(record.copy(), data)
        flat = record.reshape(1).view(np.uint64)
        fields = record[()]["shared"]
        for name, value in data.items():
            assert flat[words["data", name]] == value.ctypes.data == fields["data"][name]
            assert flat[words["size", name]] == value.size
            shape = [flat[words["shape", name] + d] for d in range(value.ndim)]
            assert shape == list(value.shape)
    narrow = np.dtype(
        [
            (
                "shared",
                [
                    ("data", [("a", np.uint32)]),
                    ("size", [("a", np.uint32)]),
                    ("shape", [("a", np.uint32, (1,))]),
                ],
            )
        ]
    )
    assert native._record_words(narrow, ["a"]) is None


def test_nutpie_s_own_extraction_is_the_fallback(private_cache, monkeypatch):
    """Where the record's layout is not the one known here, the callbacks read the
    data through nutpie's own extraction, with the same draws."""
    with exact_float_math():
        ours = native.compile_for_nutpie(_model(0.5))
        monkeypatch.setattr(native, "_loaded", {})
        monkeypatch.setattr(native, "_record_words", lambda *args: None)
        monkeypatch.setattr(native, "_FORMAT", -1)  # another cache entry: compiled anew
        calls = []
        theirs = native._np.make_extraction_fn
        monkeypatch.setattr(
            native._np, "make_extraction_fn", lambda *a: calls.append(a) or theirs(*a)
        )
        fallback = native.compile_for_nutpie(_model(0.5))
    assert len(calls) == 1  # the log density (this expansion reads no data)
    assert fallback.compiled_logp_func is not ours.compiled_logp_func
    np.testing.assert_array_equal(_draws(fallback), _draws(ours))
