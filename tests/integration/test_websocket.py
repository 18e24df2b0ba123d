"""WebSocket (and so any Upgrade) is tunnelled both ways after the 101."""
import asyncio

import websockets

import harness


class WebSocketTest(harness.GatewayTest):
    @classmethod
    def setUpClass(cls):
        cls.start_with_app("ws")

    def test_echo_text_and_binary(self):
        async def run():
            async with websockets.connect(f"ws://127.0.0.1:{self.port}/ws", open_timeout=5) as ws:
                replies = []
                for i in range(20):
                    await ws.send(f"message {i}")
                    replies.append(await asyncio.wait_for(ws.recv(), 5))
                blob = bytes(range(256)) * 1000
                await ws.send(blob)
                back = await asyncio.wait_for(ws.recv(), 5)
                return replies, back, blob
        replies, back, blob = asyncio.run(run())
        self.assertEqual(replies, [f"echo: message {i}" for i in range(20)])
        self.assertEqual(back, blob)

    def test_several_sockets_at_once(self):
        async def one(n):
            async with websockets.connect(f"ws://127.0.0.1:{self.port}/ws", open_timeout=5) as ws:
                await ws.send(f"hi {n}")
                return await asyncio.wait_for(ws.recv(), 5)

        async def run():
            return await asyncio.gather(*(one(n) for n in range(10)))
        self.assertEqual(asyncio.run(run()), [f"echo: hi {n}" for n in range(10)])

    def test_upgrade_to_plain_route_still_works_after(self):
        # a normal request on a fresh connection right after tunnels closed
        out = harness.raw_request(self.port, b"GET /text HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        self.assertIn(b"hello from ws", out)


if __name__ == "__main__":
    harness.main()
