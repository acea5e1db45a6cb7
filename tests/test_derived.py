"""The stored variables computed after sampling (derived.py): the model's own values
at every draw, over all draws at once, with each fit's own data."""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pymc as pm
import pytensor
import pytest
import xarray as xr
from pytensor.compile.builders import OpFromGraph
from pytensor.tensor.blockwise import Blockwise
from pytensor.tensor.elemwise import Elemwise

import scleromx_bayes as sxb
from conftest import REFERENCE_MODE
from scleromx_bayes.derived import JOINT, derived_variables, log_densities
from scleromx_bayes.model import build_model, canonical_value, scalar_values, stored_names
from scleromx_bayes.model import names as v

MODELS = sorted(
    p.stem
    for p in (Path(__file__).parents[1] / "models").glob("*.toml")
    if not p.stem.startswith("grid")
)


def _shared_model(example, name: str, canonical: bool = False):
    spec = sxb.load_spec(name)
    cells = example.cells(by_patient=spec.patient_effect, covariates=spec.covariates)
    model = build_model(cells, spec, shared=True)
    if canonical:  # the switch and prior values a compiled model is built with
        names = list(scalar_values(cells, spec, shared=True))
        with model:
            pm.set_data({v.MODEL_SCALARS: np.array([canonical_value(n) for n in names])})
    return model


def _draws(model, derived, chains: int, draws: int, seed: int) -> dict[str, np.ndarray]:
    """Unconstrained draws of every free parameter, spread wide enough to reach
    every branch (softplus of both signs, mixture weights near 0 and 1)."""
    rng = np.random.default_rng(seed)
    point = model.initial_point()
    return {
        p: 1.5 * rng.standard_normal((chains, draws, *np.shape(point[p])))
        for p in derived.positions
    }


def _data(derived) -> dict:
    return {d: d.get_value() for d in derived.data}


def _assert_numpy_over_all_draws(function, label) -> None:
    fgraph = function.function.maker.fgraph
    on_draws = set(fgraph.inputs[: len(function.positions)])
    for node in fgraph.toposort():
        if not on_draws.intersection(node.inputs):
            continue
        on_draws.update(node.outputs)
        assert not isinstance(node.op, (Blockwise, OpFromGraph)), (label, node)
        if isinstance(node.op, Elemwise):
            assert getattr(node.op.scalar_op, "nfunc_spec", None), (label, node)
    assert on_draws.issuperset(fgraph.outputs), label


def test_the_bundled_models_are_computed_over_all_draws_by_numpy():
    """Every operation on the draws is NumPy's over the whole batch: no operation
    looped over draws one at a time (Blockwise, an inner graph) and no element-wise
    operation PyTensor runs through a Python function per element. The same for
    the stored variables and for the log densities (likelihood, prior, joint)."""
    example = sxb.load_example()
    for name in MODELS:
        model = _shared_model(example, name)
        _assert_numpy_over_all_draws(derived_variables(model, stored_names(model)), name)
        for kind in ("likelihood", "prior", "joint"):
            _assert_numpy_over_all_draws(log_densities(model, kind), (name, kind))


@pytest.mark.parametrize(
    "name", ["base", "exnex", "patient_effect", "interaction", "ordinal", "line_of_therapy"]
)
def test_log_densities_and_category_probabilities_are_pymc_s_own(name):
    """At draws on the parameters' own scale (what a fit stores): the element-wise
    log-likelihood and log-prior are PyMC's ``compute_log_likelihood`` /
    ``compute_log_prior`` (the same variables, dims, coordinates and values), the
    joint log density is PyMC's ``compile_logp`` without Jacobians, draw by draw, and
    the category log-probabilities LOO and the predictive checks read are PyMC's
    ``compute_deterministics``."""
    from pymc.model.transform.conditioning import remove_value_transforms
    from pymc.stats.log_density import compute_log_density

    from scleromx_bayes.model import category_log_probs

    example = sxb.load_example()
    spec = sxb.load_spec(name)
    cells = example.cells(by_patient=spec.patient_effect, covariates=spec.covariates)
    model = build_model(cells, spec)
    with model, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        tree = pm.sample_prior_predictive(
            draws=6, random_seed=4, compile_kwargs={"mode": REFERENCE_MODE}
        )
    draws = tree["prior"].to_dataset()
    tree = xr.DataTree.from_dict({"posterior": draws})
    for kind in ("likelihood", "prior"):
        function = log_densities(model, kind)
        got = function({p: draws[p].values for p in function.positions}, _data(function))
        expected = compute_log_density(
            tree,
            model=model,
            kind=kind,
            extend_inferencedata=False,
            progressbar=False,
            compile_kwargs={"mode": REFERENCE_MODE},
        )
        assert list(got) == list(expected.data_vars), kind
        for variable, values in got.items():
            assert values.shape == expected[variable].shape, (kind, variable)
            np.testing.assert_allclose(values, expected[variable].values, rtol=1e-12, atol=1e-12)
    joint = log_densities(model, "joint")
    got = joint({p: draws[p].values for p in joint.positions}, _data(joint))[JOINT]
    own = remove_value_transforms(model).compile_logp(jacobian=False, mode=REFERENCE_MODE)
    for d in range(6):
        point = {p: draws[p].values[0, d] for p in joint.positions}
        assert got[0, d] == pytest.approx(float(own(point)), rel=1e-12)
    got = category_log_probs(draws, cells, spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        expected = pm.compute_deterministics(
            draws,
            var_names=[v.CATEGORY_LOG_PROB],
            model=model,
            progressbar=False,
            compile_kwargs={"mode": REFERENCE_MODE},
        )[v.CATEGORY_LOG_PROB]
    expected = expected.transpose("chain", "draw", "cell", "category")
    xr.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["base", "exnex", "patient_effect", "interaction", "ordinal"])
def test_the_stored_variables_are_the_model_s_own_at_every_draw(name):
    """Against PyMC's own graph evaluated draw by draw (rewritten as PyTensor
    does, unbatched): the same names in nutpie's order, shapes and values; the free
    parameters without a transform are the draws themselves."""
    example = sxb.load_example()
    model = _shared_model(example, name, canonical=True)
    stored = stored_names(model)
    derived = derived_variables(model, stored)
    draws = _draws(model, derived, chains=2, draws=7, seed=3)
    got = derived(draws, _data(derived))

    value_vars = [model.rvs_to_values[rv] for rv in model.free_RVs]
    outputs = [o for o in model.unobserved_value_vars if o.name in stored]
    reference = pytensor.function(
        value_vars, outputs, mode=REFERENCE_MODE, on_unused_input="ignore"
    )
    assert list(got) == [o.name for o in outputs if o.name in derived.copied] + [
        o.name for o in outputs if o.name not in derived.copied
    ]
    assert set(got) == set(stored)
    for chain in range(2):
        for draw in range(7):
            expected = reference(*[draws[x.name][chain, draw] for x in value_vars])
            for out, value in zip(outputs, expected, strict=True):
                np.testing.assert_allclose(
                    got[out.name][chain, draw], value, rtol=1e-12, atol=1e-14, err_msg=out.name
                )
    for copied in derived.copied:
        assert got[copied] is draws[copied] or np.array_equal(got[copied], draws[copied])


def test_only_the_named_variables_are_computed():
    model = _shared_model(sxb.load_example(), "base")
    derived = derived_variables(model, ["regimen_logit"])
    assert derived.names == (*sorted(derived.copied, key=derived.positions.index), "regimen_logit")
    got = derived(_draws(model, derived, 1, 4, seed=1), _data(derived))
    assert list(got) == list(derived.names)
    assert got["regimen_logit"].shape[:2] == (1, 4)


def test_each_fit_s_data_are_its_own_in_threads():
    """Fits of different scenarios finish at once in threads and compute their
    stored variables with one shared function: each call gets its own data's
    values, the same as when called alone."""
    model = _shared_model(sxb.load_example(), "exnex", canonical=True)
    derived = derived_variables(model, stored_names(model))
    draws = _draws(model, derived, chains=2, draws=50, seed=5)
    scalars = next(d for d in derived.data if d.name == v.MODEL_SCALARS)
    first = _data(derived)
    second = {**first, scalars: first[scalars] * 0.5 + 0.25}
    alone = [derived(draws, first), derived(draws, second)]
    assert any(not np.array_equal(alone[0][n], alone[1][n]) for n in derived.names)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: derived(draws, (first, second)[i % 2]), range(24)))
    for i, result in enumerate(results):
        which = i % 2
        for n in derived.names:
            assert np.array_equal(result[n], alone[which][n]), n


def test_a_draw_that_overflows_is_stored_as_inf_without_a_warning():
    """A far-tail draw the exponential cannot hold is stored as it is computed,
    as nutpie's own expansion stores it, and warns nobody once per fit."""
    with pm.Model() as model:
        pm.HalfNormal("sd", 1.0)
    derived = derived_variables(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = derived({"sd_log__": np.array([[0.0, 1000.0]])}, {})
    assert got["sd"][0, 0] == 1.0 and got["sd"][0, 1] == np.inf
