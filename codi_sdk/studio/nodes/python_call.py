"""A node that calls a Python function: the quickest way to put your own code in a graph."""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, Field

from ...errors import InvalidInputError
from ..node import NodeType, Port


def import_callable(ref: str) -> Callable[..., Any]:
    """Import ``"package.module:attribute"`` (or ``"package.module.attribute"``) and return it."""
    module_name, colon, attr = ref.partition(":")
    if not colon:
        module_name, _, attr = ref.rpartition(".")
    if not module_name or not attr:
        raise InvalidInputError(f"function {ref!r} is not an import path; accepted: 'package.module:function'")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise InvalidInputError(f"cannot import function {ref!r}: {type(exc).__name__}: {exc}") from exc
    if not callable(obj):
        raise InvalidInputError(f"{ref!r} is a {type(obj).__name__}, not a callable")
    return obj


class PythonCall(NodeType):
    """Call ``function(**inputs, **kwargs)``; its ports are declared in the params.

    The function returns a dict with one entry per output port, or, when the node has exactly one
    output port, the bare value. In YAML::

        clean:
          type: python
          params:
            function: my_package.text:normalise
            inputs: {text: text}
            outputs: {text: text}
          inputs: {text: asr.text}

    In Python, ``function`` may be the callable itself.
    """

    name = "python"
    description = "Call a Python function with the inputs as keyword arguments."

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
        function: str | Callable[..., Any] = Field(description="'package.module:function', or a callable in Python")
        inputs: dict[str, str] = Field(default_factory=dict, description="input port name -> type")
        outputs: dict[str, str] = Field(default_factory=lambda: {"result": "any"}, description="output port name -> type")
        kwargs: dict[str, Any] = Field(default_factory=dict, description="extra keyword arguments, passed as given")

    def __init__(self, params: BaseModel) -> None:
        super().__init__(params)
        fn = params.function
        self.function = import_callable(fn) if isinstance(fn, str) else fn
        if not params.outputs:
            raise InvalidInputError("a python node needs at least one output port in params.outputs")
        try:
            sig = inspect.signature(self.function)
        except (TypeError, ValueError):
            return
        names = [*params.inputs, *params.kwargs]
        try:
            sig.bind_partial(**{n: None for n in names})
        except TypeError as exc:
            raise InvalidInputError(f"function {getattr(self.function, '__name__', fn)!r} cannot take arguments {names}: {exc}") from None

    def input_ports(self) -> dict[str, Port]:
        return {name: Port(t) for name, t in self.params.inputs.items()}

    def output_ports(self) -> dict[str, Port]:
        return {name: Port(t) for name, t in self.params.outputs.items()}

    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        result = self.function(**inputs, **self.params.kwargs)
        outs = list(self.params.outputs)
        if len(outs) == 1 and not (isinstance(result, dict) and set(result) == set(outs)):
            return {outs[0]: result}
        return result
