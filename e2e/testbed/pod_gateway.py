"""What a real node's pods need of the cluster's network, on the node's bridge address.

Role: the test bed runs no CoreDNS and no kube-proxy, and its apiservers listen on
127.0.0.1 only. A pod on the real node (`e2e.testbed.real_node`) reaches its API server
the way Rancher's operation pods do, at `https://kubernetes.default` (the kubeconfig
steve's pod impersonation writes): this process answers DNS for that name (and its
`.svc` / `.svc.cluster.local` forms) with the bridge address, where it also relays port
443 to the management apiserver. Every other name is NXDOMAIN; nothing is forwarded
anywhere else. The apiserver's serving certificate already names `kubernetes.default`.

Run as a test-bed process: `python -m e2e.testbed.pod_gateway --address A --apiserver P`.
Callers: `e2e.testbed.real_node`.
"""

from __future__ import annotations

import argparse
import asyncio
import struct
from typing import cast

NAMES = ("kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local")
HTTPS = 443
DNS = 53
_QUERY_MAX = 512


def answer(query: bytes, address: str) -> bytes | None:
    """The DNS reply to `query`: an A record of `address` for NAMES, else NXDOMAIN
    (NOERROR with no answer for other types of those names); None for a malformed query."""
    if len(query) < 12:
        return None
    ident, flags, questions = struct.unpack("!HHH", query[:6])
    if flags & 0x8000 or questions != 1:
        return None
    labels, offset = [], 12
    while offset < len(query) and query[offset]:
        length = query[offset]
        labels.append(query[offset + 1 : offset + 1 + length].decode("ascii", "replace"))
        offset += 1 + length
    end = offset + 5
    if end > len(query):
        return None
    qtype = struct.unpack("!H", query[offset + 1 : offset + 3])[0]
    question = query[12:end]
    name = ".".join(labels).lower().rstrip(".")
    known = name in NAMES
    records = b""
    if known and qtype == 1:
        packed = bytes(int(part) for part in address.split("."))
        records = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 5, 4) + packed
    rcode = 0 if known else 3
    header = struct.pack("!HHHHHH", ident, 0x8180 | rcode, 1, 1 if records else 0, 0, 0)
    return header + question + records


class _Dns(asyncio.DatagramProtocol):
    def __init__(self, address: str) -> None:
        self.address = address
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = answer(data[:_QUERY_MAX], self.address)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def _relay(port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        writer.close()
        return
    await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))


async def serve(address: str, apiserver_port: int) -> None:
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(lambda: _Dns(address), local_addr=(address, DNS))
    server = await asyncio.start_server(lambda r, w: _relay(apiserver_port, r, w), address, HTTPS)
    print(
        f"pod gateway on {address}: DNS for {NAMES[0]}, 443 -> 127.0.0.1:{apiserver_port}",
        flush=True,
    )
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m e2e.testbed.pod_gateway")
    parser.add_argument("--address", required=True, help="the node bridge's address")
    parser.add_argument("--apiserver", type=int, required=True, help="apiserver port")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.address, args.apiserver))


if __name__ == "__main__":
    main()
