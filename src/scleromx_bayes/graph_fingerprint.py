"""A digest of a PyTensor graph as it is built, before any rewriting, that is the
same in every process: what :mod:`scleromx_bayes.native` looks compiled code up by
without paying for PyTensor's rewrites first.

PyTensor's own cache key is computed from the rewritten graph, and rewriting a
model's log density and gradient costs about a second per structure per process
(more than loading its compiled code). The digest here reads the graph as PyMC
builds it: every node's operation (its class and the values of its ``__props__``,
PyTensor's own notion of when two operations are the same), the node's inputs by
position, every output's type, every constant's bytes, every shared variable's name
and type (their values are data, set at run time) and the graph's inputs by
position. Rewriting is a deterministic function of that graph, the PyTensor version
and its configuration, which the caller adds to the key.

Anything that cannot be described stably (an operation holding a closure, an
unnamed or ambiguously named shared variable, an input that is not declared) makes
the graph unkeyable: :func:`fingerprint` raises :class:`Unkeyable` and the caller
compiles as usual. An unstable description can only cost a cache miss; what is described is
everything the compiled code can depend on, so two graphs with one digest compile
to the same code.
"""

from __future__ import annotations

import hashlib
import types
from collections.abc import Iterable, Sequence

import numpy as np
from pytensor.compile.builders import OpFromGraph
from pytensor.compile.sharedvalue import SharedVariable
from pytensor.graph.basic import Constant, Variable
from pytensor.graph.fg import AbstractFunctionGraph
from pytensor.graph.traversal import graph_inputs, toposort

__all__ = ["Unkeyable", "fingerprint", "shared_variables"]


class Unkeyable(Exception):
    """A part of the graph has no description that is the same in every process."""


class _Describer:
    """Stable descriptions of the values an operation's ``__props__`` hold."""

    def __init__(self):
        self._memo: dict[int, object] = {}
        self._keep: list[object] = []  # keeps memoised objects alive (ids stay unique)
        self._visiting: set[int] = set()

    def __call__(self, x) -> object:
        if x is None or isinstance(x, bool | int | str | bytes):
            return (type(x).__name__, x)
        if isinstance(x, float):
            return ("float", x.hex())
        if isinstance(x, np.ndarray):
            data = np.ascontiguousarray(x)
            if data.dtype.hasobject:
                raise Unkeyable("an object array")
            digest = hashlib.sha256(data.tobytes()).hexdigest()
            return ("ndarray", data.dtype.str, data.shape, digest)
        if isinstance(x, np.generic):
            return ("npscalar", x.dtype.str, x.tobytes())
        if isinstance(x, np.dtype):
            return ("dtype", x.str)
        if isinstance(x, tuple | list):
            return (type(x).__name__, tuple(self(v) for v in x))
        if isinstance(x, frozenset | set):
            return (type(x).__name__, tuple(sorted(repr(self(v)) for v in x)))
        if isinstance(x, dict):
            return ("dict", tuple(sorted((repr(self(k)), self(v)) for k, v in x.items())))
        if isinstance(x, slice):
            return ("slice", self(x.start), self(x.stop), self(x.step))
        if isinstance(x, type | types.FunctionType | types.BuiltinFunctionType):
            return ("named", *_qualified(x))
        if isinstance(x, AbstractFunctionGraph):  # an inner graph (Composite, ...)
            return ("graph", fingerprint(list(x.outputs), list(x.inputs)))
        if isinstance(x, OpFromGraph):
            return self._op_from_graph(x)
        return self._object(x)

    def _op_from_graph(self, op: OpFromGraph) -> object:
        """An operation defined by an inner graph (``logaddexp``, ...): what its
        ``__eq__`` compares. Per-instance gradient overrides are not described."""
        if op.pullback_overrides is not None or op.pushforward_overrides is not None:
            raise Unkeyable(f"{type(op).__qualname__} with its own gradient overrides")
        inner = fingerprint(list(op.fgraph.outputs), list(op.fgraph.inputs))
        return (
            "op_from_graph",
            *_qualified(type(op)),
            inner,
            op.is_inline,
            self(op.destroy_map),
            self(op.kwargs),
            self(op.name),
        )

    def _object(self, x) -> object:
        """An operation, a type or another object: its class and its ``__props__``
        (or, without them, its attributes)."""
        if id(x) in self._memo:
            return self._memo[id(x)]
        if id(x) in self._visiting:
            raise Unkeyable(f"a cycle through {type(x).__name__}")
        self._visiting.add(id(x))
        props = getattr(type(x), "__props__", None)
        if props is not None:
            fields = tuple((p, self(getattr(x, p))) for p in props)
        elif hasattr(x, "__dict__") and not isinstance(x, types.ModuleType):
            fields = tuple((k, self(v)) for k, v in sorted(vars(x).items()))
        else:
            raise Unkeyable(f"no stable description of {type(x).__qualname__}")
        self._visiting.discard(id(x))
        described = ("object", *_qualified(type(x)), fields)
        self._memo[id(x)] = described
        self._keep.append(x)
        return described


def _qualified(x) -> tuple[str, str]:
    module, name = getattr(x, "__module__", None), getattr(x, "__qualname__", None)
    if not module or not name or "<locals>" in name or "<lambda>" in name:
        raise Unkeyable(f"{x!r} has no importable name")
    return module, name


def fingerprint(outputs: Sequence[Variable], inputs: Iterable[Variable]) -> str:
    """A digest of the graph from ``inputs`` to ``outputs`` that is the same in every
    process for the same computation.

    Parameters
    ----------
    outputs : sequence of Variable
        The graph's outputs, in order.
    inputs : iterable of Variable
        Its inputs, in order (variables without an owner that are neither constants
        nor shared variables must be among them).

    Returns
    -------
    str
        A SHA-256 hex digest.

    Raises
    ------
    Unkeyable
        When a part of the graph has no description stable across processes.

    Examples
    --------
    >>> import pytensor.tensor as pt
    >>> x = pt.vector("x")
    >>> a, b = fingerprint([pt.exp(x) * 2.0], [x]), fingerprint([pt.exp(x) * 2.0], [x])
    >>> a == b, a == fingerprint([pt.exp(x) * 3.0], [x])
    (True, False)
    """
    describe = _Describer()
    ids: dict[Variable, object] = {v: ("input", i) for i, v in enumerate(inputs)}
    shared_names: dict[str, Variable] = {}

    def root(v: Variable) -> object:
        if isinstance(v, Constant):
            return ("constant", describe(v.type), describe(v.data))
        if isinstance(v, SharedVariable):
            if not v.name or shared_names.setdefault(v.name, v) is not v:
                raise Unkeyable(f"shared variable {v.name!r} is unnamed or not unique")
            return ("shared", v.name, describe(v.type))
        raise Unkeyable(f"{v} is an input of the graph that was not declared")

    def ident(v: Variable) -> object:
        if v not in ids:
            ids[v] = root(v)
        return ids[v]

    nodes = []
    for i, node in enumerate(toposort(outputs, blockers=list(ids))):
        nodes.append(
            (
                describe(node.op),
                tuple(ident(v) for v in node.inputs),
                tuple(describe(o.type) for o in node.outputs),
            )
        )
        for j, out in enumerate(node.outputs):
            ids[out] = ("node", i, j)
    described = (tuple(nodes), tuple(ident(v) for v in outputs))
    return hashlib.sha256(repr(described).encode()).hexdigest()


def shared_variables(outputs: Sequence[Variable]) -> dict[str, Variable]:
    """The graph's shared variables by name (names assumed unique: see
    :func:`fingerprint`).

    Parameters
    ----------
    outputs : sequence of Variable
        The graph's outputs.

    Returns
    -------
    dict of str to Variable
        Each shared variable the outputs depend on, under its name.

    Examples
    --------
    >>> import pytensor, pytensor.tensor as pt
    >>> y = pytensor.shared(np.ones(3), name="y")
    >>> sorted(shared_variables([pt.sum(y * 2.0)]))
    ['y']
    """
    return {v.name: v for v in graph_inputs(outputs) if isinstance(v, SharedVariable) and v.name}
