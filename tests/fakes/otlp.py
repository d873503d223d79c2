"""A local OpenTelemetry collector stub: OTLP over HTTP (protobuf), as the SDK's own
exporter sends it, kept in memory for a test (and a bench) to read."""
from __future__ import annotations

import gzip
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


def _value(any_value: dict):
    for kind in ("stringValue", "intValue", "boolValue", "doubleValue"):
        if kind in any_value:
            return int(any_value[kind]) if kind == "intValue" else any_value[kind]
    return any_value


class CollectorStub:
    def __init__(self):
        self.spans: list[dict] = []
        self.requests = 0
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                stub.receive(body)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def receive(self, body: bytes) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        found = []
        for resource_spans in request.resource_spans:
            resource = {a.key: MessageToDict(a.value) for a in resource_spans.resource.attributes}
            service = _value(resource.get("service.name", {}))
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    found.append({
                        "service": service, "name": span.name, "kind": span.kind,
                        "trace_id": span.trace_id.hex(), "span_id": span.span_id.hex(),
                        "parent_id": span.parent_span_id.hex() or None,
                        "links": [link.trace_id.hex() for link in span.links],
                        "attributes": {a.key: _value(MessageToDict(a.value))
                                       for a in span.attributes}})
        with self._lock:
            self.spans.extend(found)
            self.requests += 1

    def snapshot(self) -> list[dict]:
        with self._lock:
            return list(self.spans)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
