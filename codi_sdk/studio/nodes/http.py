"""A node that calls an HTTP JSON service (standard library ``urllib``; no extra dependency)."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ...errors import InvalidInputError
from ..node import NodeType, Port

JSON_TYPES = ("text", "json", "number", "any")


class HttpJsonService(NodeType):
    """Send the inputs as a JSON object to a URL and read the outputs from the JSON object it answers.

    With ``POST``/``PUT`` the body is ``{port: value, ...}`` merged over ``body``; with ``GET`` the
    inputs become query parameters. The answer must be a JSON object holding a key per output port
    (a node with one output port also accepts any JSON value as the whole answer). A non-2xx status,
    a timeout, or a malformed answer fails the node with the URL and the reason.
    """

    name = "http.json"
    description = "Call an HTTP JSON service."

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        url: str
        method: Literal["POST", "PUT", "GET"] = "POST"
        inputs: dict[str, str] = Field(default_factory=lambda: {"text": "text"}, description="input port -> type (text, json, number, any)")
        outputs: dict[str, str] = Field(default_factory=lambda: {"text": "text"}, description="output port -> type")
        headers: dict[str, str] = Field(default_factory=dict)
        body: dict[str, Any] = Field(default_factory=dict, description="constant fields added to every request")
        timeout_s: float = Field(30.0, gt=0)

        @field_validator("url")
        @classmethod
        def _http_only(cls, url: str) -> str:
            if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
                raise ValueError(f"url {url!r} must start with http:// or https://")
            return url

    def __init__(self, params: BaseModel) -> None:
        super().__init__(params)
        bad = [f"{side} {k!r} ({t})" for side, ports in (("input", params.inputs), ("output", params.outputs)) for k, t in ports.items() if t not in JSON_TYPES]
        if bad:
            raise InvalidInputError(f"port(s) {', '.join(bad)} cannot travel as JSON; accepted types: {', '.join(JSON_TYPES)}")
        if not params.outputs:
            raise InvalidInputError("an http.json node needs at least one output port in params.outputs")

    def input_ports(self) -> dict[str, Port]:
        return {name: Port(t) for name, t in self.params.inputs.items()}

    def output_ports(self) -> dict[str, Port]:
        return {name: Port(t) for name, t in self.params.outputs.items()}

    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        p = self.params
        url, data = p.url, None
        headers = {"Accept": "application/json", **p.headers}
        if p.method == "GET":
            query = {k: v if isinstance(v, str) else json.dumps(v) for k, v in {**p.body, **inputs}.items()}
            url += ("&" if urllib.parse.urlsplit(url).query else "?") + urllib.parse.urlencode(query)
        else:
            data = json.dumps({**p.body, **inputs}).encode("utf-8")
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, headers=headers, method=p.method)
        where = f"{p.method} {p.url}"
        try:
            with urllib.request.urlopen(request, timeout=p.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode("utf-8", errors="replace").strip()
            raise RuntimeError(f"{where} answered HTTP {exc.code} {exc.reason}" + (f": {detail}" if detail else "")) from None
        except (TimeoutError, socket.timeout) as exc:
            raise TimeoutError(f"{where} gave no answer within {p.timeout_s:g} s (timeout_s)") from exc
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, (TimeoutError, socket.timeout)):
                raise TimeoutError(f"{where} gave no answer within {p.timeout_s:g} s (timeout_s)") from exc
            raise ConnectionError(f"{where} could not be reached: {exc.reason}") from exc
        try:
            answer = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where} answered something that is not JSON: {raw[:120]!r}") from exc
        outs = list(p.outputs)
        if isinstance(answer, dict) and all(k in answer for k in outs):
            return {k: answer[k] for k in outs}
        if len(outs) == 1 and not isinstance(answer, dict):
            return {outs[0]: answer}
        keys = ", ".join(answer) if isinstance(answer, dict) else type(answer).__name__
        raise ValueError(f"{where} answered without the key(s) {', '.join(k for k in outs if not isinstance(answer, dict) or k not in answer)}; it sent: {keys}")
