"""Whom the supervisor trusts when it talks TLS to the chat server (REST and WebSocket).

Trust is the system's CA store - where an admin installs a private CA, and which OpenSSL
lets `SSL_CERT_FILE` / `SSL_CERT_DIR` override - plus certifi's bundle when certifi is
importable, so a machine with an empty or stale system store still reaches public servers.

This module must never call `certifi.where()`, nor let httpx do it: httpx does so for
`verify=True` (the default, even for plain-http clients, when it builds its transport), and
inside the zipapp `where()` extracts cacert.pem to a temporary file, while the supervisor
writes nothing outside its state directory. The bundle is read into memory instead.
"""

from __future__ import annotations

import importlib.resources
import ssl


def ssl_context() -> ssl.SSLContext:
    """A new client context that checks certificates and host names.

    Building one parses a few hundred certificates (a few milliseconds): make one per
    client and reuse it, not one per request.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    bundle = _certifi_bundle()
    if bundle:
        context.load_verify_locations(cadata=bundle)
    return context


def plain_http_context() -> ssl.SSLContext:
    """For a client that is not meant to speak TLS at all (an http:// server reached
    without an https proxy): it still verifies, with no CA loaded, so TLS met anyway fails
    closed. Free to build, where `ssl_context` parses the CA bundles (~50 ms of start-up)."""
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def _certifi_bundle() -> str:
    """certifi's PEM bundle, read in memory (from a directory or straight out of a zip)."""
    try:
        resource = importlib.resources.files("certifi").joinpath("cacert.pem")
        return resource.read_text(encoding="ascii")
    except (ImportError, OSError):
        # No certifi, or a distribution's certifi that points at the system store and
        # ships no cacert.pem: the system store alone is the right answer then.
        return ""
