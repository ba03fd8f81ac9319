"""The HTTP redirect actor on the stack's Ray: it listens, redirects, refuses a taken port, stops."""

from __future__ import annotations

import socket
import time

import httpx
import pytest
import ray

from eventray.platform.errors import ServiceUnavailable
from eventray.serving.redirect import start_redirect, stop_redirect

pytestmark = pytest.mark.timeout(120)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_redirect_actor_redirects_until_stopped(stack_runtime) -> None:
    stack_runtime.connect_ray()
    port = _free_port()
    start_redirect("127.0.0.1", port, 8443)
    try:
        start_redirect("127.0.0.1", port, 8443)  # a second deploy keeps the running one
        r = httpx.get(f"http://127.0.0.1:{port}/graphql?query=%7Bme%7D", follow_redirects=False, timeout=10)
        assert r.status_code == 308 and r.headers["location"] == "https://127.0.0.1:8443/graphql?query=%7Bme%7D"
        assert httpx.post(f"http://127.0.0.1:{port}/graphql", json={"query": "{me{subject}}"},
                          timeout=10).status_code == 403
    finally:
        stop_redirect(port)
    deadline = time.monotonic() + 10  # ray.kill is asynchronous: the port closes shortly after
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
        except httpx.ConnectError:
            break
        except (httpx.ReadError, httpx.RemoteProtocolError):
            pass  # the actor died under an open connection: still going away, try again
        time.sleep(0.1)
    else:
        pytest.fail("the redirect port still answered 10 s after stop_redirect")


def test_a_taken_port_is_a_clear_error(stack_runtime) -> None:
    stack_runtime.connect_ray()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServiceUnavailable, match="is the port taken"):
            start_redirect("127.0.0.1", port, 8443)
    assert ray.is_initialized()
