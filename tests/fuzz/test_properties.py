"""The project's own hypothesis strategies, for what a spec cannot express (issue 12): deep
nesting, lone surrogates, huge integers, repeated query parameters and raw HTTP junk. The bar
is the same as the schema fuzz: no 5xx, a JSON error naming the problem, the server answering
afterwards (checked by the fixture, with no traceback in its log)."""

from __future__ import annotations

import json
import socket
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ServerProcess
from tests.fuzz.conftest import EXAMPLES

SETTINGS = settings(
    max_examples=EXAMPLES * 5,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
    database=None,
)
JSON_ROUTES = [
    ("PUT", "/api/jobs"),
    ("POST", "/api/jobs"),
    ("DELETE", "/api/jobs"),
    ("POST", "/api/resetjobs"),
    ("POST", "/api/workers"),
    ("POST", "/api/affinities"),
    ("POST", "/api/jobs/1/dependencies"),
    ("POST", "/workers/pickjob"),
    ("POST", "/workers/heartbeat"),
    ("POST", "/workers/endjob"),
]
FIELDS = [
    "title",
    "command",
    "dir",
    "user",
    "parent",
    "priority",
    "retry",
    "timeout",
    "affinity",
    "dependencies",
    "paused",
    "name",
    "cpu",
    "free_memory",
    "job_id",
    "event",
    "log_offset",
    "exit_code",
]
huge_ints = st.one_of(
    st.integers(min_value=2**62, max_value=2**80),
    st.integers(max_value=-(2**62), min_value=-(2**80)),
    st.integers(min_value=10**30, max_value=10**40),
)
surrogates = st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=4)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), huge_ints, st.floats(), st.text(max_size=30), surrogates
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(FIELDS), st.text(max_size=8)), inner, max_size=4),
    ),
    max_leaves=20,
)


def _ok(status: int, body: bytes) -> None:
    assert status < 500, body[:300]
    if status >= 400:
        assert json.loads(body)["error"]


@given(route=st.sampled_from(JSON_ROUTES), value=json_values)
@SETTINGS
def test_json_values_never_make_a_5xx(fuzz_server: ServerProcess, route: tuple[str, str], value: Any) -> None:
    # json.dumps writes NaN/Infinity and lone surrogates as \\udXXX escapes: all of it goes in.
    text = json.dumps(value)
    r = fuzz_server.request(*route, data=text.encode(), headers={"Content-Type": "application/json"})
    _ok(r.status_code, r.content)


@given(
    route=st.sampled_from(JSON_ROUTES),
    depth=st.integers(min_value=60, max_value=200_000),
    kind=st.sampled_from("[{"),
)
@SETTINGS
def test_deep_nesting_is_a_400(
    fuzz_server: ServerProcess, route: tuple[str, str], depth: int, kind: str
) -> None:
    text = "[" * depth + "]" * depth if kind == "[" else '{"a":' * depth + "1" + "}" * depth
    r = fuzz_server.request(*route, data=text.encode(), headers={"Content-Type": "application/json"})
    _ok(r.status_code, r.content)
    if depth > 64:
        assert r.status_code == 400


@given(
    path=st.sampled_from(
        [
            "/api/jobs",
            "/api/events",
            "/api/audit",
            "/api/stats",
            "/api/jobs/1/log",
            "/json/addjob",
            "/workers/pickjob",
        ]
    ),
    params=st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "parent",
                    "state",
                    "offset",
                    "limit",
                    "changed_since",
                    "howlong",
                    "hours",
                    "job",
                    "tail",
                    "name",
                    "priority",
                    "title",
                    "sort",
                    "order",
                ]
            ),
            st.one_of(
                st.text(max_size=12),
                st.integers().map(str),
                huge_ints.map(str),
                st.sampled_from(["nan", "inf", "-inf", "1e999", "²", "٣", "1_0", "9" * 5000]),
            ),
        ),
        max_size=5,
    ),
)
@SETTINGS
def test_query_strings_never_make_a_5xx(
    fuzz_server: ServerProcess, path: str, params: list[tuple[str, str]]
) -> None:
    r = fuzz_server.request("GET", path, params=params)  # repeated names included
    _ok(r.status_code, r.content)


@given(
    junk=st.one_of(
        st.binary(max_size=600),
        st.lists(
            st.sampled_from(
                [
                    b"GET ",
                    b"POST ",
                    b"/api/jobs",
                    b"/workers/heartbeat",
                    b" HTTP/1.1",
                    b" HTTP/2.0",
                    b" HTTP/0.9",
                    b"\r\n",
                    b"Content-Length: ",
                    b"-1",
                    b"99999999999999999999",
                    b"Transfer-Encoding: chunked",
                    b"Transfer-Encoding: gzip",
                    b"Host: x",
                    b"\x00",
                    b"\xff",
                    b": ",
                    b"zz\r\n",
                ]
            ),
            max_size=30,
        ).map(b"".join),
    )
)
@SETTINGS
def test_raw_http_junk_never_makes_a_5xx(fuzz_server: ServerProcess, junk: bytes) -> None:
    with socket.create_connection(("127.0.0.1", fuzz_server.port), timeout=15) as sock:
        sock.sendall(junk + b"\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)  # no more to say: the server must answer or close now
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    if answer.startswith(b"HTTP/"):
        status = int(answer.split()[1])
        assert status < 500, answer[:300]  # an HTTP version we do not speak too: a 400
