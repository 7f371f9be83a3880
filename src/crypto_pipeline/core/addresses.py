"""`host:port` lists, as KAFKA_BOOTSTRAP_SERVERS and Kafka's clients write them."""

from __future__ import annotations

import ipaddress
import socket
from typing import NamedTuple


class HostPort(NamedTuple):
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def parse_servers(text: str) -> tuple[HostPort, ...]:
    """`host:port[,host:port...]` -> its addresses; ValueError naming a bad one."""
    servers = [s.strip() for s in text.split(",") if s.strip()]
    if not servers:
        raise ValueError("expected host:port[,host:port...]")
    parsed = []
    for server in servers:
        host, _, port = server.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{server!r} is not host:port")
        parsed.append(HostPort(host, int(port)))
    return tuple(parsed)


def any_accepts(servers: str, timeout: float = 2.0) -> bool:
    """Whether any of the servers accepts a TCP connection."""
    for address in parse_servers(servers):
        try:
            socket.create_connection(address, timeout=timeout).close()
            return True
        except OSError:
            continue
    return False


def bind_host(host: str) -> str:
    """Where to listen for clients told to connect to `host`: `localhost` binds IPv4
    loopback only."""
    return "127.0.0.1" if host in ("localhost", "") else host


def is_loopback(host: str) -> bool:
    """Whether listening on `host` keeps a service to this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
