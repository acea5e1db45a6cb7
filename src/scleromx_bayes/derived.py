"""Functions of a model's draws, computed for all draws at once by NumPy: the stored
variables of a fit after sampling, and the log densities the checks read.

nutpie samples the free parameters' unconstrained values; what a fit keeps is the
parameters on their own scale (``site_sd``, not its log) and the model's
deterministics (``regimen_logit``, ``exchangeability_weight``, ...). nutpie computes
those inside the sampler, one draw at a time, through a second compiled callback:
about 4 s of numba's compile on an empty cache (a quarter of a first fit), compiled
again for every model structure. Here the sampler only copies each draw (one
callback for every model, compiled once per machine: :mod:`native`), and the
stored variables are computed afterwards from all draws at once, by the same
PyMC graph, vectorised over draws and evaluated by NumPy: about a tenth of a second
to build per structure and process, a millisecond or so per fit.

The graph's data (``pm.Data``: counts, switches, hyper-parameters) are inputs of
the function, not shared variables, so that fits of different scenarios running in
threads at once each use their own.

The values are the graph's own, computed by NumPy rather than by numba: the
sampler's path and every free parameter without a transform are the same bits
either way; a transformed parameter or a deterministic may differ from nutpie's own
expansion in the last bit or two (``tests/test_derived.py``).

:func:`log_densities` does the same for the element-wise log-likelihood and
log-prior (power scaling) and the joint log density (reweighting a grid) at draws on
the parameters' own scale, where PyMC would compile the graph with numba (seconds per
structure on an empty cache) and call it once per draw.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pytensor
import pytensor.tensor as pt
from pymc.model.transform.conditioning import remove_value_transforms
from pytensor.compile.builders import OpFromGraph
from pytensor.compile.mode import Mode
from pytensor.compile.ops import ViewOp
from pytensor.graph.basic import Variable
from pytensor.graph.replace import _vectorize_node, clone_replace
from pytensor.graph.rewriting.basic import in2out, node_rewriter
from pytensor.graph.rewriting.utils import rewrite_graph
from pytensor.graph.traversal import toposort, truncated_graph_inputs
from pytensor.link.vm import VMLinker
from pytensor.scalar.basic import Identity, Second
from pytensor.scalar.math import Softplus
from pytensor.tensor.basic import Join
from pytensor.tensor.elemwise import Elemwise
from pytensor.tensor.math import Dot
from pytensor.tensor.shape import Shape, Shape_i
from pytensor.tensor.subtensor import AdvancedIncSubtensor

from .graph_fingerprint import shared_variables

__all__ = ["JOINT", "NUMPY_MODE", "DerivedVariables", "derived_variables", "log_densities"]

JOINT = "joint_log_density"  # the output of log_densities(model, "joint")

# NumPy through each operation's own `perform`: nothing compiled, so building the
# function costs graph work only. No rewrites either: they would only fuse
# operations into loops NumPy runs element by element in Python. Also the mode of
# the package's forward sampling (prior draws: one call per draw, milliseconds each,
# where numba's compile of the same random graph costs seconds).
NUMPY_MODE = Mode(linker=VMLinker(use_cloop=False, c_thunks=False), optimizer=None)


@dataclass(frozen=True, eq=False)
class DerivedVariables:
    """Computes a model's stored variables (or log densities) from draws of its free
    parameters.

    Attributes
    ----------
    positions : tuple of str
        The free parameters' value names (unconstrained for the stored variables, on
        their own scale for the log densities), the function's inputs.
    names : tuple of str
        The outputs: the stored variables, in the order nutpie stores them (free
        parameters without a transform, copied, then the rest, computed), or the
        log densities.
    data : tuple of Variable
        The shared variables (``pm.Data``) the computed ones read, in input order.

    Examples
    --------
    >>> import numpy as np, pymc as pm
    >>> from scleromx_bayes.derived import derived_variables
    >>> with pm.Model() as m:
    ...     sd = pm.HalfNormal("sd", 1.0)
    >>> derived = derived_variables(m)
    >>> derived.positions, derived.names
    (('sd_log__',), ('sd',))
    >>> out = derived({"sd_log__": np.zeros((2, 3))}, {})
    >>> out["sd"].shape, float(out["sd"][0, 0])
    ((2, 3), 1.0)
    """

    positions: tuple[str, ...]
    names: tuple[str, ...]
    data: tuple[Variable, ...]
    copied: frozenset[str]
    function: object = field(repr=False)
    # a compiled PyTensor function keeps its inputs and outputs in shared storage:
    # fits finishing at once in threads take turns (a call takes milliseconds)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __call__(
        self, draws: Mapping[str, np.ndarray], data: Mapping[Variable, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """The outputs at ``draws``.

        Parameters
        ----------
        draws : mapping of str to array
            Each of :attr:`positions`' draws, shape ``(chain, draw, *shape)``.
        data : mapping of Variable to array
            The value of each of :attr:`data` for this fit.

        Returns
        -------
        dict of str to array
            Each of :attr:`names`, shape ``(chain, draw, *shape)``.
        """
        draws = {p: np.asarray(draws[p]) for p in self.positions}
        lead = draws[self.positions[0]].shape[:2]  # chains, draws per chain
        flat = [d.reshape(-1, *d.shape[2:]) for d in draws.values()]  # all draws at once
        # a draw that overflows on the way (exp of a far tail) stores inf, as
        # nutpie's own expansion would, without a warning per fit
        with self._lock, np.errstate(all="ignore"):
            values = self.function(*flat, *[data[d] for d in self.data])
        computed = iter(values)
        out = {}
        for name in self.names:
            if name in self.copied:
                out[name] = draws[name]
            else:
                value = next(computed)
                out[name] = value.reshape(*lead, *value.shape[1:])
        return out

    def at_posterior(self, posterior) -> dict[str, np.ndarray]:
        """The outputs at a fit's stored draws (an ``xarray`` Dataset or DataTree
        node with ``chain`` and ``draw`` dims), under the data the model's shared
        variables hold now.

        Returns
        -------
        dict of str to array
            Each of :attr:`names`, shape ``(chain, draw, *shape)``.
        """
        draws = {p: posterior[p].transpose("chain", "draw", ...).values for p in self.positions}
        return self(draws, {d: d.get_value(borrow=True) for d in self.data})


def derived_variables(model, var_names: Sequence[str] | None = None) -> DerivedVariables:
    """The function from a model's unconstrained draws to its stored variables.

    Parameters
    ----------
    model : pymc.Model
    var_names : sequence of str, optional
        The variables to store besides the free parameters (all when None), as
        nutpie's ``var_names``.

    Returns
    -------
    DerivedVariables
    """
    values = [model.rvs_to_values[rv] for rv in model.free_RVs]
    positions = [value.name for value in values]
    pairs = zip(model.free_RVs, values, strict=True)
    copied = [value.name for rv, value in pairs if value.name == rv.name]  # no transform
    remaining = [v for v in model.unobserved_value_vars if v.name not in positions]
    if var_names is not None:
        wanted = set(var_names)
        remaining = [v for v in remaining if v.name in wanted]
    function, data = _over_draws(values, remaining)
    return DerivedVariables(
        positions=tuple(positions),
        names=(*copied, *[v.name for v in remaining]),
        data=tuple(data),
        copied=frozenset(copied),
        function=function,
    )


def log_densities(model, kind: Literal["likelihood", "prior", "joint"]) -> DerivedVariables:
    """Log densities at draws of the parameters on their own scale, computed for all
    draws at once by NumPy (nothing compiled): the element-wise log density of each
    observed (``likelihood``) or free (``prior``) variable, what
    ``pymc.compute_log_likelihood`` and ``pymc.stats.compute_log_prior`` add to a
    fit; or (``joint``) the model's joint log density without Jacobians, potentials
    included, as one output named :data:`JOINT`.

    Parameters
    ----------
    model : pymc.Model
    kind : {"likelihood", "prior", "joint"}

    Returns
    -------
    DerivedVariables
        Its inputs are the free parameters' names (the draws a fit stores), its
        outputs one log density per variable, named after the variable (or the
        joint one).

    Examples
    --------
    >>> import numpy as np, pymc as pm
    >>> from scleromx_bayes.derived import log_densities
    >>> with pm.Model() as m:
    ...     sd = pm.HalfNormal("sd", 1.0)
    ...     y = pm.Normal("y", 0.0, sd, observed=[0.0, 1.0])
    >>> ll = log_densities(m, "likelihood")
    >>> out = ll({"sd": np.ones((1, 2))}, {})
    >>> out["y"].shape, round(float(out["y"][0, 0, 1]), 4)
    ((1, 2, 2), -1.4189)
    """
    if kind not in ("likelihood", "prior", "joint"):
        raise ValueError(f"kind must be 'likelihood', 'prior' or 'joint', not {kind!r}")
    model = remove_value_transforms(model)  # draws are stored on their own scale
    values = [model.rvs_to_values[rv] for rv in model.free_RVs]
    if kind == "joint":
        names, densities = (JOINT,), [model.logp(jacobian=False)]
    else:
        targets = model.observed_RVs if kind == "likelihood" else model.free_RVs
        names, densities = tuple(rv.name for rv in targets), model.logp(vars=targets, sum=False)
    function, data = _over_draws(values, densities)
    return DerivedVariables(
        positions=tuple(value.name for value in values),
        names=names,
        data=tuple(data),
        copied=frozenset(),
        function=function,
    )


def _over_draws(values: Sequence[Variable], outputs: Sequence[Variable]) -> tuple[object, list]:
    """``outputs`` (graphs of the model's ``values`` and data) as one NumPy function of
    every value's draws (a leading draw dimension each) and of the data, and the
    shared variables (``pm.Data``) that are its data inputs, in input order."""
    outputs = [pt.as_tensor(o, allow_xtensor_conversion=True) for o in outputs]
    by_name = shared_variables(outputs)
    data = [by_name[name] for name in sorted(by_name)]
    inputs = {d: d.type() for d in data}
    outputs = clone_replace(outputs, inputs)
    batched = {
        value: pt.tensor(dtype=value.dtype, shape=(None,) * (value.ndim + 1), name=value.name)
        for value in values
    }
    new = _batched(outputs, batched)
    # after batching: vectorising an operation can itself write a fill or a softplus
    new = rewrite_graph(new, include=(), custom_rewrite=in2out(_numpy_form), clone=False)
    n_draws = next(iter(batched.values())).shape[0]
    outputs = [_every_draw(b, o, n_draws) for b, o in zip(new, outputs, strict=True)]
    function = pytensor.function(
        [*batched.values(), *inputs.values()],
        outputs,
        mode=NUMPY_MODE,
        on_unused_input="ignore",
        accept_inplace=False,
    )
    return function, data


def _batched(outputs: list, replace: Mapping) -> list:
    """``pytensor.graph.vectorize_graph`` with one batch dimension (the draws), and
    batched forms of the operations it would otherwise loop over in Python, one draw
    at a time (``Blockwise``): identity views, shapes, matrix products, inner graphs,
    joins and scatter-adds of unbatched and batched pieces."""
    inputs = truncated_graph_inputs(outputs, ancestors_to_include=replace.keys())
    new = {inp: replace.get(inp, inp) for inp in inputs}
    n_draws = next(iter(replace.values())).shape[0]
    for node in toposort(outputs, blockers=inputs):
        args = [new.get(i, i) for i in node.inputs]
        if all(a is i for a, i in zip(args, node.inputs, strict=True)):
            new.update({o: o for o in node.outputs})  # nothing batched upstream
            continue
        new.update(zip(node.outputs, _batched_node(node, args, n_draws), strict=True))
    return [new[o] for o in outputs]


def _batched_node(node, args: list, n_draws) -> list:
    op = node.op
    if isinstance(op, ViewOp):
        return args
    if isinstance(op, (Shape, Shape_i)) and args[0].ndim > node.inputs[0].ndim:
        # every draw has the same shape: its shape is not batched (vectorize_graph
        # repeats it per draw, and an allocation of that size then loops over draws)
        shape = args[0].shape[1:]
        return [shape if isinstance(op, Shape) else shape[op.i]]
    if isinstance(op, Dot):  # covariates times coefficients: one tensordot for all draws
        (x, y), (x0, y0) = args, node.inputs
        if x.ndim > x0.ndim and y.ndim == y0.ndim:  # (draw, m, n) @ (n, p)
            return [pt.tensordot(x, y, axes=[[2], [0]])]
        if y.ndim > y0.ndim and x.ndim == x0.ndim:  # (m, n) @ (draw, n, p)
            return [pt.tensordot(y, x, axes=[[1], [1]]).transpose(0, 2, 1)]
    if isinstance(op, OpFromGraph):
        inner = op.fgraph.bind(dict(zip(op.fgraph.inputs, node.inputs, strict=True)))
        return _batched(list(inner), dict(zip(node.inputs, args, strict=True)))
    if isinstance(op, Join):
        pieces = [_every_draw(a, i, n_draws) for a, i in zip(args, node.inputs, strict=True)]
        return [Join(op.axis + 1)(*pieces)]
    if isinstance(op, AdvancedIncSubtensor) and all(
        a is i for a, i in zip(args[2:], node.inputs[2:], strict=True)
    ):  # the indices are data, the same for every draw
        x, y = (_every_draw(a, i, n_draws) for a, i in zip(args[:2], node.inputs[:2], strict=True))
        batched = type(op)(
            (slice(None), *op.idx_list),
            set_instead_of_inc=op.set_instead_of_inc,
            ignore_duplicates=op.ignore_duplicates,
        )
        return batched.make_node(x, y, *args[2:]).outputs
    result = _vectorize_node(op, node, *args)
    return list(getattr(result, "outputs", result))


@node_rewriter([Elemwise])
def _numpy_form(fgraph, node):
    """NumPy forms of the element-wise operations PyTensor runs element by element
    in Python (softplus, fill, identity): one NumPy call for all draws instead."""
    scalar_op = node.op.scalar_op
    if isinstance(scalar_op, Softplus):
        (x,) = node.inputs
        return [pt.maximum(x, 0.0) + pt.log1p(pt.exp(-pt.abs(x)))]
    if isinstance(scalar_op, Identity):
        return node.inputs
    if isinstance(scalar_op, Second):  # fill: y in x's shape
        x, y = node.inputs
        # (broadcast_arrays would write a fill again)
        return [pt.cast(pt.broadcast_to(y, pt.broadcast_shape(x, y)), node.outputs[0].dtype)]
    return None


def _every_draw(batched: Variable, original: Variable, n_draws) -> Variable:
    """``batched`` with its draw dimension spelled out (an unbatched value repeated)."""
    if batched.ndim > original.ndim:
        return batched
    return pt.broadcast_to(pt.shape_padleft(batched), (n_draws, *batched.shape))
