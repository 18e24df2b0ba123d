"""WebSockets to an HTTP/2 upstream: carried as an extended CONNECT (RFC
8441) whether the client spoke HTTP/1.1 (Upgrade, RFC 6455: its 101 and
Sec-WebSocket-Accept made from the upstream's 200) or HTTP/2 (its own
extended CONNECT). The upstream is the FastAPI test app under hypercorn,
which takes WebSockets over h2c. An HTTP/2 upstream that does not announce
SETTINGS_ENABLE_CONNECT_PROTOCOL (a grpcio server) gets nothing: the
client gets a 502."""
import asyncio
import os
import socket
import struct

import h2.config
import h2.connection
import h2.events
import requests
import websockets

import harness


def ws_frame(payload, opcode=1):
    """A masked client frame (RFC 6455 5.2)."""
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def ws_frames(data):
    """(opcode, payload) of the unmasked server frames in data, and the rest."""
    out = []
    while len(data) >= 2:
        n, at = data[1] & 0x7F, 2
        if n == 126:
            if len(data) < 4:
                break
            n, at = struct.unpack("!H", data[2:4])[0], 4
        elif n == 127:
            if len(data) < 10:
                break
            n, at = struct.unpack("!Q", data[2:10])[0], 10
        if len(data) < at + n:
            break
        out.append((data[0] & 0x0F, data[at:at + n]))
        data = data[at + n:]
    return out, data


class WebSocketToHttp2UpstreamTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.app = harness.start_app("wsh2", server="hypercorn")
        cls.grpc = harness.start_grpc_backend("wsh2-grpc")
        cls.procs = [cls.app, cls.grpc]
        cls.start_gateway(f"""
routes:
  - name: no-extended-connect
    match: {{ path_prefix: /ws-grpc }}
    cluster: grpc
  - name: ws
    cluster: h2app
clusters:
  - {{ name: h2app, protocol: h2c, endpoints: [127.0.0.1:{cls.app.port}] }}
  - {{ name: grpc, protocol: h2c, endpoints: [127.0.0.1:{cls.grpc.port}] }}
""")

    @classmethod
    def tearDownClass(cls):
        cls.finish()

    def test_http1_client_upgrade_becomes_extended_connect(self):
        async def run():
            # the websockets client checks Sec-WebSocket-Accept against its key.
            # After the closing handshake hypercorn ends its stream only once
            # the client's side ends (RFC 8441 maps TCP FIN to END_STREAM),
            # while an RFC 6455 client waits for the server to close first: it
            # closes after close_timeout, then the tunnel ends both ways.
            async with websockets.connect(f"ws://127.0.0.1:{self.port}/ws", open_timeout=10, close_timeout=1) as ws:
                replies = []
                for i in range(5):
                    await ws.send(f"message {i}")
                    replies.append(await asyncio.wait_for(ws.recv(), 10))
                blob = bytes(range(256)) * 400
                await ws.send(blob)
                return replies, await asyncio.wait_for(ws.recv(), 10), blob
        replies, back, blob = asyncio.run(run())
        self.assertEqual(replies, [f"echo: message {i}" for i in range(5)])
        self.assertEqual(back, blob)
        # plain requests share the same upstream connection pool meanwhile
        r = requests.get(f"http://127.0.0.1:{self.port}/whoami", timeout=10)
        self.assertEqual(r.status_code, 200)

    def test_http2_client_extended_connect_end_to_end(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        c.initiate_connection()
        s.sendall(c.data_to_send())
        got, head, ended, rest = [], None, False, b""

        def pump(until):
            nonlocal head, ended, rest
            while not until():
                d = s.recv(65536)
                self.assertTrue(d, "the gateway closed the connection")
                for ev in c.receive_data(d):
                    if isinstance(ev, h2.events.ResponseReceived):
                        head = dict(ev.headers)
                    elif isinstance(ev, h2.events.DataReceived):
                        c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                        frames, rest = ws_frames(rest + ev.data)
                        got.extend(frames)
                    elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)):
                        ended = True
                s.sendall(c.data_to_send())
        try:
            pump(lambda: c.remote_settings.enable_connect_protocol == 1)
            c.send_headers(1, [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"),
                               (":path", "/ws"), (":authority", "x"), ("sec-websocket-version", "13")])
            s.sendall(c.data_to_send())
            pump(lambda: head is not None)
            self.assertEqual(head[":status"], "200")
            for word in (b"hello", b"again"):
                c.send_data(1, ws_frame(word))
                s.sendall(c.data_to_send())
                pump(lambda: (1, b"echo: " + word) in got)
            c.send_data(1, ws_frame(b"\x03\xe8", opcode=8))  # close
            s.sendall(c.data_to_send())
            pump(lambda: any(op == 8 for op, _ in got) or ended)
            self.assertTrue(any(op == 8 for op, _ in got), got)  # the upstream's close frame came back
        finally:
            s.close()

    def test_upstream_without_extended_connect_is_502(self):
        async def run():
            try:
                async with websockets.connect(f"ws://127.0.0.1:{self.port}/ws-grpc", open_timeout=10):
                    return None
            except websockets.exceptions.InvalidStatusCode as e:
                return e.status_code
        self.assertEqual(asyncio.run(run()), 502)
        r = requests.get(f"http://127.0.0.1:{self.port}/whoami", timeout=10)
        self.assertEqual(r.status_code, 200)


if __name__ == "__main__":
    harness.main()
