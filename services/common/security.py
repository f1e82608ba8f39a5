"""Transport security and caller authentication for every gRPC server and client.

What lives here:

- :func:`caller_identity`: who is calling, for code that scopes data to its caller.
- TLS and mTLS credentials from files, re-read when the files change (servers on every
  new connection, clients before each call), so certificates rotate without a restart.
- Bearer-token authentication: a server interceptor checking ``authorization: Bearer
  <token>`` against a file of ``name:token`` lines (re-read on change), and a client
  interceptor that sends the token read from a file.
"""

from __future__ import annotations

import contextvars
from typing import Any

# The principal bound by the token interceptor for the duration of one call.
_PRINCIPAL: contextvars.ContextVar[str] = contextvars.ContextVar("drape_principal", default="")


def peer_certificate_identity(context: Any) -> str:
    """The verified client certificate's common name (else its first subject alternative
    name) of an mTLS call; "" without a verified client certificate.

    gRPC fills ``x509_common_name`` / ``x509_subject_alternative_name`` in the auth
    context only when the peer presented a certificate that the server verified against
    its client CA (``DRAPE_TLS_CLIENT_CA_FILE``).
    """
    try:
        auth = context.auth_context() or {}
    except (AttributeError, NotImplementedError, ValueError):
        return ""
    for key in ("x509_common_name", "x509_subject_alternative_name"):
        for value in auth.get(key) or ():
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
            if text:
                return text
    return ""


def caller_identity(context: Any) -> str:
    """The authenticated principal of the current call; "" when authentication is off.

    With bearer tokens on (``DRAPE_AUTH_TOKENS_FILE``) it is the token's name from the
    tokens file; otherwise, with mTLS on (``DRAPE_TLS_CLIENT_CA_FILE``), the client
    certificate's common name (else first subject alternative name). Call it from the
    handler's thread (servicer code), where the interceptor bound the principal.

    Args:
        context: the call's ``grpc.ServicerContext``.

    Returns:
        The principal, or "" for an unauthenticated deployment.
    """
    principal = _PRINCIPAL.get()
    if principal:
        return principal
    return peer_certificate_identity(context)
