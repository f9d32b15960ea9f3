"""The real node's DNS answers (e2e.testbed.pod_gateway.answer): pure logic, no socket."""

from __future__ import annotations

import struct

from e2e.testbed.pod_gateway import answer

ADDRESS = "198.19.255.1"


def _query(name: str, qtype: int = 1, ident: int = 7) -> bytes:
    labels = b"".join(bytes([len(part)]) + part.encode() for part in name.split("."))
    return (
        struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0)
        + labels
        + b"\0"
        + struct.pack("!HH", qtype, 1)
    )


def test_the_apiservers_names_resolve_to_the_bridge() -> None:
    for name in ("kubernetes.default", "kubernetes.default.svc.cluster.local"):
        reply = answer(_query(name), ADDRESS)
        assert reply is not None
        ident, flags, _, answers = struct.unpack("!HHHH", reply[:8])
        assert (ident, flags & 0xF, answers) == (7, 0, 1)
        assert reply.endswith(bytes([198, 19, 255, 1]))


def test_other_names_are_nxdomain_and_other_types_empty() -> None:
    for name in ("kubernetes.default.cattle-system.svc.cluster.local", "example.org"):
        reply = answer(_query(name), ADDRESS)
        assert reply is not None
        assert struct.unpack("!H", reply[2:4])[0] & 0xF == 3  # NXDOMAIN
        assert struct.unpack("!H", reply[6:8])[0] == 0
    aaaa = answer(_query("kubernetes.default", qtype=28), ADDRESS)
    assert aaaa is not None
    assert struct.unpack("!HH", aaaa[2:4] + aaaa[6:8]) == (0x8180, 0)


def test_malformed_queries_get_no_answer() -> None:
    assert answer(b"\0\1", ADDRESS) is None
    assert answer(_query("kubernetes.default")[:-3], ADDRESS) is None
    reply_bit = bytearray(_query("kubernetes.default"))
    reply_bit[2] |= 0x80
    assert answer(bytes(reply_bit), ADDRESS) is None
