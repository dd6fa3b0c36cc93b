"""A small fake of Google's Compute Engine and Cloud Storage REST endpoints, on 127.0.0.1.

Google ships no GCE emulator, so this is the one stand-in DESIGN.md allows. It keeps state
(instances, firewalls, buckets, objects) so that the real google-cloud-compute client can
be driven through insert/list/delete and setup's get/insert/patch, records every request
for assertions, and injects failures on demand: `fault(method, path_regex, status, reason)`
answers the next matching request with an HTTP error, and `fail_operation(code)` makes the
next insert end in a failed operation (GCE's way of reporting capacity errors).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

PREFIX = "/compute/v1/projects/(?P<project>[^/]+)"


class FakeGoogle:
    """State and switches of the fake; `url` is the api_endpoint to give clients."""

    def __init__(self) -> None:
        self.instances: dict[str, dict[str, Any]] = {}  # name -> camelCase Instance JSON
        self.firewalls: dict[str, dict[str, Any]] = {}
        self.buckets: dict[str, dict[str, Any]] = {}
        self.objects: dict[tuple[str, str], bytes] = {}
        self.requests: list[tuple[str, str, Any]] = []
        self.faults: list[tuple[str, re.Pattern[str], int, str]] = []
        self.operation_errors: list[str] = []
        self.serial: dict[str, str] = {}  # instance name -> serial port 1 output
        self.bucket_iam: dict[str, dict[str, Any]] = {}  # bucket -> IAM policy
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    # -- switches ---------------------------------------------------------------------------------

    def fault(self, method: str, path: str, status: int, reason: str = "") -> None:
        """Answer the next `method` request whose path matches `path` with HTTP `status`."""
        self.faults.append((method, re.compile(path), status, reason))

    def fail_operation(self, code: str) -> None:
        """The next instance insert is accepted, but its operation ends with error `code`."""
        self.operation_errors.append(code)

    def set_status(self, name: str, status: str) -> None:
        self.instances[name]["status"] = status

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep pytest output clean
                pass

            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, body = fake.handle(method, self.path, raw, self.headers.get("Content-Type", ""))
                out = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def do_PATCH(self) -> None:
                self._serve("PATCH")

            def do_PUT(self) -> None:
                self._serve("PUT")

            def do_DELETE(self) -> None:
                self._serve("DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=lambda: self.server.serve_forever(poll_interval=0.05), daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    # -- routing ----------------------------------------------------------------------------------

    def handle(self, method: str, target: str, raw: bytes, content_type: str) -> tuple[int, Any]:
        parts = urlsplit(target)
        path, query = parts.path, parse_qs(parts.query)
        body: Any = None
        if raw and "json" in content_type:
            body = json.loads(raw)
        with self.lock:
            self.requests.append((method, path, body if body is not None else raw))
            for i, (m, pattern, status, reason) in enumerate(self.faults):
                if m == method and pattern.search(path):
                    del self.faults[i]
                    return status, _error(status, reason or "injected fault", reason)
            for route_method, pattern, fn in ROUTES:
                if route_method != method:
                    continue
                match = re.fullmatch(pattern, path)
                if match:
                    return fn(self, match.groupdict(), query, body if body is not None else raw)
        return 404, _error(404, f"no route {method} {path}", "notFound")

    # Compute: instances

    def insert_instance(self, p: dict[str, str], q: Any, body: dict[str, Any]) -> tuple[int, Any]:
        name = body["name"]
        if name in self.instances:
            return 409, _error(409, f"The resource '{name}' already exists", "alreadyExists")
        error = self.operation_errors.pop(0) if self.operation_errors else ""
        if not error:
            self.instances[name] = {
                **body,
                "kind": "compute#instance",
                "id": str(abs(hash(name)) % 10**12),
                "status": "PROVISIONING",
                "zone": f"projects/{p['project']}/zones/{p['zone']}",
                "creationTimestamp": datetime.fromtimestamp(time.time(), UTC).isoformat(),
            }
        return 200, _operation(p, "insert", name, error)

    def list_instances(self, p: dict[str, str], q: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        items = list(self.instances.values())
        for flt in q.get("filter", []):
            m = re.fullmatch(r'labels\.([\w-]+)\s*=\s*"([^"]*)"', flt.strip())
            if m:
                items = [i for i in items if i.get("labels", {}).get(m.group(1)) == m.group(2)]
        return 200, {"kind": "compute#instanceList", "items": items}

    def get_instance(self, p: dict[str, str], q: Any, body: Any) -> tuple[int, Any]:
        if p["name"] not in self.instances:
            return 404, _error(404, f"The resource '{p['name']}' was not found", "notFound")
        return 200, self.instances[p["name"]]

    def delete_instance(self, p: dict[str, str], q: Any, body: Any) -> tuple[int, Any]:
        if self.instances.pop(p["name"], None) is None:
            return 404, _error(404, f"The resource '{p['name']}' was not found", "notFound")
        return 200, _operation(p, "delete", p["name"])

    def serial_port(self, p: dict[str, str], q: Any, body: Any) -> tuple[int, Any]:
        if p["name"] not in self.instances:
            return 404, _error(404, f"The resource '{p['name']}' was not found", "notFound")
        text = self.serial.get(p["name"], "")
        return 200, {
            "kind": "compute#serialPortOutput",
            "contents": text,
            "start": "0",
            "next": str(len(text)),
        }

    def get_operation(self, p: dict[str, str], q: Any, body: Any) -> tuple[int, Any]:
        return 200, {"kind": "compute#operation", "name": p["name"], "status": "DONE", "progress": 100}

    # Compute: firewalls

    def insert_firewall(self, p: dict[str, str], q: Any, body: dict[str, Any]) -> tuple[int, Any]:
        if body["name"] in self.firewalls:
            return 409, _error(409, "already exists", "alreadyExists")
        self.firewalls[body["name"]] = {**body, "kind": "compute#firewall"}
        return 200, _operation(p, "insert", body["name"])

    def get_firewall(self, p: dict[str, str], q: Any, body: Any) -> tuple[int, Any]:
        if p["name"] not in self.firewalls:
            return 404, _error(404, f"The resource '{p['name']}' was not found", "notFound")
        return 200, self.firewalls[p["name"]]

    def patch_firewall(self, p: dict[str, str], q: Any, body: dict[str, Any]) -> tuple[int, Any]:
        if p["name"] not in self.firewalls:
            return 404, _error(404, "not found", "notFound")
        self.firewalls[p["name"]].update(body)
        return 200, _operation(p, "patch", p["name"])

    # Storage

    def get_bucket(self, p: dict[str, str], q: Any, body: Any) -> tuple[int, Any]:
        name = unquote(p["bucket"])
        if name not in self.buckets:
            return 404, _error(404, "The specified bucket does not exist.", "notFound")
        return 200, self.buckets[name]

    def insert_bucket(
        self, p: dict[str, str], q: dict[str, list[str]], body: dict[str, Any]
    ) -> tuple[int, Any]:
        self.buckets[body["name"]] = {**body, "kind": "storage#bucket", "projectNumber": "1"}
        return 200, self.buckets[body["name"]]

    def patch_bucket(self, p: dict[str, str], q: Any, body: dict[str, Any]) -> tuple[int, Any]:
        name = unquote(p["bucket"])
        if name not in self.buckets:
            return 404, _error(404, "The specified bucket does not exist.", "notFound")
        for key, value in body.items():  # one level deep is enough for iamConfiguration
            if isinstance(value, dict) and isinstance(self.buckets[name].get(key), dict):
                self.buckets[name][key].update(value)
            else:
                self.buckets[name][key] = value
        return 200, self.buckets[name]

    def get_bucket_iam(self, p: dict[str, str], q: Any, body: Any) -> tuple[int, Any]:
        name = unquote(p["bucket"])
        if name not in self.buckets:
            return 404, _error(404, "The specified bucket does not exist.", "notFound")
        default = {
            "kind": "storage#policy",
            "etag": "CAE=",
            "bindings": [
                {"role": "roles/storage.legacyBucketOwner", "members": ["projectOwner:test-project"]}
            ],
        }
        return 200, self.bucket_iam.get(name, default)

    def set_bucket_iam(self, p: dict[str, str], q: Any, body: dict[str, Any]) -> tuple[int, Any]:
        name = unquote(p["bucket"])
        if name not in self.buckets:
            return 404, _error(404, "The specified bucket does not exist.", "notFound")
        self.bucket_iam[name] = {**body, "etag": "CAI="}
        return 200, self.bucket_iam[name]

    def get_object(self, p: dict[str, str], q: Any, body: Any) -> tuple[int, Any]:
        key = (unquote(p["bucket"]), unquote(p["object"]))
        if key not in self.objects:
            return 404, _error(404, "No such object", "notFound")
        data = self.objects[key]
        md5 = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
        return 200, {"name": key[1], "bucket": key[0], "size": str(len(data)), "md5Hash": md5}

    def upload_object(self, p: dict[str, str], q: dict[str, list[str]], body: bytes) -> tuple[int, Any]:
        bucket = unquote(p["bucket"])
        if bucket not in self.buckets:
            return 404, _error(404, "The specified bucket does not exist.", "notFound")
        self.objects[(bucket, q["name"][0])] = body
        return 200, {"name": q["name"][0], "bucket": bucket}


def _error(status: int, message: str, reason: str = "") -> dict[str, Any]:
    return {"error": {"code": status, "message": message, "errors": [{"message": message, "reason": reason}]}}


def _operation(p: dict[str, str], kind: str, target: str, error: str = "") -> dict[str, Any]:
    op: dict[str, Any] = {
        "kind": "compute#operation",
        "name": f"operation-{kind}-{target}-{time.monotonic_ns()}",
        "operationType": kind,
        "status": "DONE",
        "progress": 100,
        "targetLink": target,
    }
    if "zone" in p:
        op["zone"] = f"projects/{p['project']}/zones/{p['zone']}"
    if error:
        op["httpErrorStatusCode"] = 503
        op["httpErrorMessage"] = "SERVICE UNAVAILABLE"
        op["error"] = {"errors": [{"code": error, "message": f"{error}: the zone has no capacity"}]}
    return op


ROUTES = [
    ("POST", PREFIX + "/zones/(?P<zone>[^/]+)/instances", FakeGoogle.insert_instance),
    ("GET", PREFIX + "/zones/(?P<zone>[^/]+)/instances", FakeGoogle.list_instances),
    ("GET", PREFIX + "/zones/(?P<zone>[^/]+)/instances/(?P<name>[^/]+)", FakeGoogle.get_instance),
    ("DELETE", PREFIX + "/zones/(?P<zone>[^/]+)/instances/(?P<name>[^/]+)", FakeGoogle.delete_instance),
    ("GET", PREFIX + "/zones/(?P<zone>[^/]+)/instances/(?P<name>[^/]+)/serialPort", FakeGoogle.serial_port),
    ("GET", PREFIX + "/zones/(?P<zone>[^/]+)/operations/(?P<name>[^/]+)", FakeGoogle.get_operation),
    ("GET", PREFIX + "/global/operations/(?P<name>[^/]+)", FakeGoogle.get_operation),
    ("POST", PREFIX + "/global/firewalls", FakeGoogle.insert_firewall),
    ("GET", PREFIX + "/global/firewalls/(?P<name>[^/]+)", FakeGoogle.get_firewall),
    ("PATCH", PREFIX + "/global/firewalls/(?P<name>[^/]+)", FakeGoogle.patch_firewall),
    ("GET", "/storage/v1/b/(?P<bucket>[^/]+)", FakeGoogle.get_bucket),
    ("PATCH", "/storage/v1/b/(?P<bucket>[^/]+)", FakeGoogle.patch_bucket),
    ("GET", "/storage/v1/b/(?P<bucket>[^/]+)/iam", FakeGoogle.get_bucket_iam),
    ("PUT", "/storage/v1/b/(?P<bucket>[^/]+)/iam", FakeGoogle.set_bucket_iam),
    ("POST", "/storage/v1/b", FakeGoogle.insert_bucket),
    ("GET", "/storage/v1/b/(?P<bucket>[^/]+)/o/(?P<object>.+)", FakeGoogle.get_object),
    ("POST", "/upload/storage/v1/b/(?P<bucket>[^/]+)/o", FakeGoogle.upload_object),
]
