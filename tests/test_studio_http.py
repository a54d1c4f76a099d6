"""The http.json node against a real HTTP server on 127.0.0.1, started by the test."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from codi_sdk.studio import Graph, GraphValidationError, run_graph, validate_graph


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep test output quiet
        pass

    def _answer(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.seen.append((self.path, request, dict(self.headers)))
        if self.path == "/shout":
            self._answer(200, json.dumps({"text": request["text"].upper() + request.get("suffix", ""), "length": len(request["text"])}).encode())
        elif self.path == "/slow":
            time.sleep(1.5)  # longer than the node's timeout_s
            self._answer(200, b'{"text": "late"}')
        elif self.path == "/broken":
            self._answer(500, b"model crashed: CUDA out of memory", "text/plain")
        elif self.path == "/html":
            self._answer(200, b"<html>hello</html>", "text/html")
        else:
            self._answer(404, b'{"error": "no such route"}')

    def do_GET(self):
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
        self._answer(200, json.dumps({"text": query.get("text", "")[::-1]}).encode())


@pytest.fixture(scope="module")
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    srv.seen = []
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", srv
    srv.shutdown()
    srv.server_close()


def http_graph(url: str, **params) -> Graph:
    g = Graph(name="http", inputs={"t": "text"})
    g.add_node("svc", "http.json", inputs={"text": "t"}, params={"url": url, **params})
    return g


def test_post_json_and_read_declared_outputs(server):
    base, srv = server
    g = http_graph(f"{base}/shout", outputs={"text": "text", "length": "number"}, body={"suffix": "!"}, headers={"X-Key": "k"})
    result = run_graph(g, {"t": "hola"})
    assert result.ok, result.failed
    assert result.nodes["svc"].outputs == {"text": "HOLA!", "length": 4}
    path, request, headers = srv.seen[-1]
    assert path == "/shout" and request == {"suffix": "!", "text": "hola"} and headers["X-Key"] == "k"


def test_get_sends_inputs_as_query(server):
    base, _ = server
    result = run_graph(http_graph(f"{base}/rev", method="GET"), {"t": "abc"})
    assert result.outputs["svc.text"] == "cba"


def test_timeout_fails_the_node_with_the_limit(server):
    base, _ = server
    start = time.perf_counter()
    result = run_graph(http_graph(f"{base}/slow", timeout_s=0.3), {"t": "x"})
    assert time.perf_counter() - start < 1.4  # gave up before the server answered
    err = result.failed["svc"]
    assert isinstance(err.__cause__, TimeoutError)
    assert f"node 'svc' (http.json) failed: TimeoutError: POST {base}/slow gave no answer within 0.3 s" in str(err)


def test_server_error_500_fails_the_node_with_status_and_body(server):
    base, _ = server
    g = http_graph(f"{base}/broken")
    g.add_node("after", "http.json", inputs={"text": "svc.text"}, params={"url": f"{base}/shout"})
    g.add_node("independent", "http.json", inputs={"text": "t"}, params={"url": f"{base}/shout"})
    result = run_graph(g, {"t": "x"})
    err = str(result.failed["svc"])
    assert "HTTP 500" in err and "model crashed: CUDA out of memory" in err and f"{base}/broken" in err
    assert result.nodes["after"].status == "skipped"
    assert result.nodes["independent"].outputs["text"] == "X"


def test_not_json_and_missing_key_are_clear(server):
    base, _ = server
    result = run_graph(http_graph(f"{base}/html"), {"t": "x"})
    assert "not JSON" in str(result.failed["svc"])
    result = run_graph(http_graph(f"{base}/shout", outputs={"answer": "text"}), {"t": "x"})
    assert "without the key(s) answer" in str(result.failed["svc"]) and "text, length" in str(result.failed["svc"])


def test_unreachable_service_is_a_connection_error():
    result = run_graph(http_graph("http://127.0.0.1:9/none", timeout_s=2), {"t": "x"})
    assert "could not be reached" in str(result.failed["svc"])


def test_http_params_are_validated():
    with pytest.raises(GraphValidationError, match="must start with http"):
        validate_graph(http_graph("ftp://example.invalid/x"))
    with pytest.raises(GraphValidationError, match="cannot travel as JSON"):
        validate_graph(http_graph("http://127.0.0.1:9/", inputs={"text": "image"}))
