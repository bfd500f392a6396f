"""The client's address, seen through the reverse proxies this server is told to trust.

``X-Forwarded-For`` is a header anyone can send, so it is believed only when the direct peer is
one of ``ECARD_TRUSTED_PROXIES`` (default: none). Then the header is read from the right, where
the trusted proxy appended the address it saw, skipping further trusted hops; the first address
that is not a trusted proxy is the client. Everything keyed on "who is asking" (the login lockout,
the per-source rate limits) uses :func:`client_address`.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

from fastapi import Request

from server.config import ServerSettings

Network = IPv4Network | IPv6Network
Address = IPv4Address | IPv6Address


def client_address(request: Request) -> str:
    """The address of whoever sent *request*: the direct peer unless it is a trusted proxy."""
    peer = request.client.host if request.client else ""
    settings: ServerSettings | None = getattr(request.app.state, "settings", None)
    trusted = settings.trusted_proxies if settings is not None else []
    return resolve_client(peer, request.headers.getlist("x-forwarded-for"), trusted)


def resolve_client(peer: str, forwarded_for: Sequence[str], trusted: Sequence[Network]) -> str:
    """The client behind *peer*, given the X-Forwarded-For header lines and the trusted proxies.

    A hop that is not an IP address ends the walk: a trusted proxy never writes one, so it was
    typed by the client, and the last trusted hop's peer is as far as the evidence goes.
    """
    if not trusted or not _is_trusted(peer, trusted):
        return peer
    hops = [hop.strip() for line in forwarded_for for hop in line.split(",") if hop.strip()]
    client = peer
    for hop in reversed(hops):
        address = _parse(hop)
        if address is None:
            break
        client = str(address)
        if not _is_trusted(client, trusted):
            break
    return client


def _is_trusted(host: str, trusted: Sequence[Network]) -> bool:
    address = _parse(host)
    if address is None:
        return False
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address.version == network.version and address in network for network in trusted)


def _parse(host: str) -> Address | None:
    host = host.strip()
    if host.startswith("[") and "]" in host:  # [2001:db8::1]:443
        host = host[1 : host.index("]")]
    elif host.count(":") == 1:  # 203.0.113.7:5123
        host = host.split(":", 1)[0]
    try:
        return ip_address(host)
    except ValueError:
        return None
