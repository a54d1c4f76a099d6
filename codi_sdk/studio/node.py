"""`NodeType`: what a Studio node is: typed ports, validated parameters, and a ``run``.

A node type is a class. Studio instantiates it once per graph node with that node's validated
parameters, asks it for its ports (which may depend on the parameters), checks that its service is
installed, and calls :meth:`NodeType.run` with one value per input port. A plugin adds node types
by returning the classes from the ``codi_studio_nodes`` hook::

    from pydantic import BaseModel
    from codi_sdk import hookimpl
    from codi_sdk.studio import NodeType, Port

    class Shout(NodeType):
        name = "acme.shout"
        description = "Upper-cases text."
        inputs = {"text": Port("text")}
        outputs = {"text": Port("text")}

        class Params(BaseModel):
            suffix: str = "!"

        def run(self, inputs):
            return {"text": inputs["text"].upper() + self.params.suffix}

    @hookimpl
    def codi_studio_nodes():
        return [Shout]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict


@dataclass(frozen=True)
class Port:
    """A typed input or output of a node.

    ``type`` is a port type (see :mod:`codi_sdk.studio.types`). An input that is not ``required``
    may be left unconnected and then receives ``default``. A ``many`` input accepts a list of
    sources and receives a list of values, in the order listed.
    """

    type: str
    required: bool = True
    many: bool = False
    default: Any = None
    description: str = ""


class NoParams(BaseModel):
    """Parameters of a node type that takes none."""

    model_config = ConfigDict(extra="forbid")


class NodeType:
    """Base class of Studio node types.

    Class attributes a subclass sets: ``name`` (the ``type:`` used in graphs, dotted by
    convention, e.g. ``"speech.recognize"``), ``description`` (one line), ``Params`` (a pydantic
    model of the parameters; unknown parameters are rejected), ``inputs``/``outputs`` (static
    ports). Node types whose ports depend on their parameters override :meth:`input_ports` and
    :meth:`output_ports` instead.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    Params: ClassVar[type[BaseModel]] = NoParams
    inputs: ClassVar[dict[str, Port]] = {}
    outputs: ClassVar[dict[str, Port]] = {}

    def __init__(self, params: BaseModel) -> None:
        self.params = params

    def input_ports(self) -> dict[str, Port]:
        """The input ports of this node (default: the class's ``inputs``)."""
        return dict(type(self).inputs)

    def output_ports(self) -> dict[str, Port]:
        """The output ports of this node (default: the class's ``outputs``)."""
        return dict(type(self).outputs)

    def check(self) -> None:
        """Raise :class:`~codi_sdk.studio.errors.ServiceUnavailableError` saying how to install what
        this node needs, if it is missing. Called during validation, so keep it cheap (no model loading)."""

    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Compute the outputs: ``inputs`` maps each input port to its value; return one value per output port.

        Runs in a worker thread, possibly beside other nodes; raise on failure (the executor
        reports the error under this node's name).
        """
        raise NotImplementedError(f"node type {self.name!r} does not implement run()")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
