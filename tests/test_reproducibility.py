"""Same data, spec and seed: bit-identical draws, whatever the compile cache holds."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

# EXNEX's mixture (logaddexp) is where a warm cache once changed the draws.
SCRIPT = textwrap.dedent(
    """
    import hashlib, warnings
    import numpy as np
    warnings.simplefilter("ignore")
    import scleromx_bayes as sxb
    fit = sxb.fit(sxb.load_example(), "exnex", seed=7, draws=150, tune=150, chains=2)
    post = fit.posterior["posterior"].to_dataset()
    digest = hashlib.sha256()
    for name in sorted(post.data_vars):
        digest.update(np.ascontiguousarray(post[name].values).tobytes())
    from scleromx_bayes.native import native_cache_stats
    stats = native_cache_stats()
    print(stats["compiled"], stats["loaded"], stats["uncached"], stats["graphs_reused"])
    print(digest.hexdigest())
    """
)


def _draws_digest(cache: str, extra_flags: str = "") -> tuple[str, list[int]]:
    """The draws' digest, and nutpie callbacks compiled / loaded from disk / uncached,
    and models whose graphs were recognised before rewriting."""
    env = dict(os.environ)
    # base_compiledir holds PyTensor's numba cache too; compiledir alone does not move it
    flags = f"base_compiledir={cache},compiledir={cache}/compiledir"
    env["PYTENSOR_FLAGS"] = flags + (f",{extra_flags}" if extra_flags else "")
    env["NUMBA_CACHE_DIR"] = f"{cache}/numba"
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    *_, counts, digest = done.stdout.strip().splitlines()
    return digest, [int(c) for c in counts.split()]


def test_draws_identical_with_an_empty_and_a_warm_compile_cache(tmp_path):
    cache = str(tmp_path / "cache")
    # empty cache, and the user's PyTensor set to fast-math (its default): all compiled now
    cold, cold_counts = _draws_digest(cache, "numba__fastmath=True")
    # the same cache, now full, and the user's setting the other way: the package
    # compiles with fast-math off inside its own calls, so neither reaches the draws
    warm, warm_counts = _draws_digest(cache, "numba__fastmath=False")
    assert len(cold) == 64
    assert cold == warm
    # the cold process compiled nutpie's two callbacks and stored them; the warm one
    # recognised the model's graphs before rewriting them and loaded that code from
    # disk instead (see native.py): loaded code, same draws
    assert cold_counts == [2, 0, 0, 0]
    assert warm_counts == [0, 2, 0, 1]


def test_exact_float_math_restores_the_users_setting():
    import pytensor

    from scleromx_bayes.model import exact_float_math

    before = pytensor.config.numba__fastmath
    with exact_float_math():
        assert pytensor.config.numba__fastmath is False
    assert pytensor.config.numba__fastmath == before


def test_exact_float_math_blocks_in_two_threads_take_turns():
    """PyTensor's configuration is one per process. A grid's refit thread compiles
    beside the caller's borrowing or log-density compile, so a block ending in one
    thread must not turn fast-math back on inside another thread's block: the second
    block waits until the first has ended."""
    import threading

    import pytensor

    from scleromx_bayes.model import exact_float_math

    before = pytensor.config.numba__fastmath
    inside, release, second_done = threading.Event(), threading.Event(), threading.Event()
    seen = []

    def first():
        with exact_float_math():
            inside.set()
            release.wait(10)
            seen.append(pytensor.config.numba__fastmath)

    def second():
        with exact_float_math():
            pass
        second_done.set()

    one = threading.Thread(target=first)
    one.start()
    assert inside.wait(10)
    two = threading.Thread(target=second)
    two.start()
    assert not second_done.wait(0.3)  # its turn comes after the first block
    release.set()
    one.join(10)
    two.join(10)
    assert second_done.is_set() and seen == [False]
    assert pytensor.config.numba__fastmath == before
