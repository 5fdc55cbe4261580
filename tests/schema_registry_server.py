"""A minimal Confluent-compatible schema registry over HTTP, for tests that run several processes.

The real registry is a Java service that cannot run here, and confluent-kafka's ``mock://`` registry lives in one
process: when the LMS's producer, our consumers, the relay and edx-event-bus-kafka's consumer are separate
processes, they must resolve one another's schema ids through a server. This one serves what
``SchemaRegistryClient`` uses to register and read schemas: ``POST /subjects/{subject}/versions``,
``GET /schemas/ids/{id}``, ``GET /subjects`` and ``GET /subjects/{subject}/versions/{version|latest}``. As the
real registry does, one schema (same type, same text) has one id across subjects, and registering it again
under a subject gives that id without a new version. In memory; no compatibility checks, references or modes.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import unquote, urlsplit

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class Registry:
    """Schemas by id and the ids of each subject's versions (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: dict[tuple[str, str], int] = {}
        self.schemas: dict[int, tuple[str, str]] = {}
        self.subjects: dict[str, list[int]] = {}

    def register(self, subject: str, schema_type: str, text: str) -> int:
        """The id of the schema, registered under ``subject`` if it was not yet."""
        with self._lock:
            schema_id = self._ids.setdefault((schema_type, text), len(self._ids) + 1)
            self.schemas[schema_id] = (schema_type, text)
            versions = self.subjects.setdefault(subject, [])
            if schema_id not in versions:
                versions.append(schema_id)
            return schema_id


def _schema_fields(schema_type: str, text: str) -> dict[str, Any]:
    """A schema as the registry describes it (``schemaType`` only when not AVRO, as the real one does)."""
    return {"schema": text} if schema_type == "AVRO" else {"schema": text, "schemaType": schema_type}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: every answer has a Content-Length

    @property
    def registry(self) -> Registry:
        return cast(RegistryServer, self.server).registry

    def do_GET(self) -> None:
        parts = self._parts()
        if parts == ["subjects"]:
            self._answer(200, sorted(self.registry.subjects))
        elif len(parts) == 3 and parts[:2] == ["schemas", "ids"] and parts[2].isdigit():
            found = self.registry.schemas.get(int(parts[2]))
            if found is None:
                self._error(404, 40403, f"Schema {parts[2]} not found")
            else:
                self._answer(200, _schema_fields(*found))
        elif len(parts) == 4 and parts[0] == "subjects" and parts[2] == "versions":
            versions = self.registry.subjects.get(parts[1])
            if not versions:
                self._error(404, 40401, f"Subject '{parts[1]}' not found.")
                return
            version = len(versions) if parts[3] == "latest" else int(parts[3]) if parts[3].isdigit() else 0
            if not 1 <= version <= len(versions):
                self._error(404, 40402, f"Version {parts[3]} not found.")
                return
            schema_id = versions[version - 1]
            self._answer(200, {"subject": parts[1], "version": version, "id": schema_id,
                               **_schema_fields(*self.registry.schemas[schema_id])})
        else:
            self._error(404, 404, "HTTP 404 Not Found")

    def do_POST(self) -> None:
        parts = self._parts()
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if len(parts) != 3 or parts[0] != "subjects" or parts[2] != "versions":
            self._error(404, 404, "HTTP 404 Not Found")
        elif not isinstance(body.get("schema"), str):
            self._error(422, 42201, "Invalid schema: no schema text")
        elif body.get("references"):
            self._error(422, 42201, "Schema references are not supported by this test registry")
        else:
            self._answer(200, {"id": self.registry.register(parts[1], body.get("schemaType") or "AVRO",
                                                            body["schema"])})

    def _parts(self) -> list[str]:
        return [unquote(part) for part in urlsplit(self.path).path.strip("/").split("/")]

    def _error(self, status: int, code: int, message: str) -> None:
        self._answer(status, {"error_code": code, "message": message})

    def _answer(self, status: int, document: object) -> None:
        payload = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: no line per request on stderr."""


class RegistryServer(ThreadingHTTPServer):
    """The HTTP server, holding its registry."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.registry = Registry()


@contextmanager
def serve() -> Iterator[str]:
    """Run a registry on a free port of 127.0.0.1 in a thread; yields its URL."""
    server = RegistryServer()
    thread = threading.Thread(target=server.serve_forever, name="schema-registry", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
