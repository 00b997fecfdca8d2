"""The process's sockets, the embedded nodes' included, stay on loopback."""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from pathlib import Path

from django.core.files.base import ContentFile

from dedupstore.backends.ipfs import IPFSStorage


def _socket_inodes() -> set[str]:
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _address(
    hex_address: str, family: int
) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    host, port = hex_address.split(":")
    raw = bytes.fromhex(host)
    if family == socket.AF_INET:
        packed = struct.pack("<I", struct.unpack(">I", raw)[0])
    else:  # four little-endian 32-bit words
        packed = b"".join(
            struct.pack("<I", struct.unpack(">I", raw[i : i + 4])[0]) for i in range(0, 16, 4)
        )
    return ipaddress.ip_address(packed), int(port, 16)


def our_inet_sockets() -> list[tuple[str, str, str]]:
    """Return ``(table, local, remote)`` of every TCP/UDP socket this process holds."""
    inodes = _socket_inodes()
    found = []
    for table, family in (
        ("tcp", socket.AF_INET),
        ("tcp6", socket.AF_INET6),
        ("udp", socket.AF_INET),
        ("udp6", socket.AF_INET6),
    ):
        path = Path(f"/proc/self/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                local, remote = _address(fields[1], family), _address(fields[2], family)
                found.append((table, local, remote))
    return found


def _loopback(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_loopback


def test_node_sockets_are_loopback_only(make_node) -> None:  # type: ignore[no-untyped-def]
    first, second = make_node(), make_node()
    second.connect(f"{first.multiaddrs()[0]}/p2p/{first.peer_id()}")
    storage = IPFSStorage(embedded_repo=str(first.repo))
    storage.save("s.txt", ContentFile(b"socket check"))
    sockets = our_inet_sockets()
    listeners = [s for s in sockets if s[2][1] == 0]
    # Both nodes listen, on 127.0.0.1 only; they are connected to each other.
    assert len([s for s in listeners if s[0] == "tcp"]) >= 2
    assert any(s[2][1] != 0 for s in sockets)
    for table, (local, _), (remote, remote_port) in sockets:
        assert _loopback(local), (table, local)
        assert remote_port == 0 or _loopback(remote), (table, remote)
    assert all(addr.startswith("/ip4/127.0.0.1/") for addr in first.multiaddrs())
