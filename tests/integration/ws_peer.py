"""The WebSocket ends of test_proxy_ws.py, run by the interpreter that has
Debian's python3-websockets (asyncio API, 10.x):
  ws_peer.py server PORT   an echo server; "push N" makes it send N messages
  ws_peer.py client URL    talks through the proxy, prints "ok" or raises"""
import asyncio
import sys

import websockets


async def serve(port):
    async def echo(ws, path=None):
        async for msg in ws:
            if isinstance(msg, str) and msg.startswith("push "):
                for i in range(int(msg.split()[1])):
                    await ws.send("pushed %d" % i)
            else:
                await ws.send(msg)
    async with websockets.serve(echo, "127.0.0.1", port, max_size=None):
        print("listening", flush=True)
        await asyncio.Future()


async def client(url):
    async with websockets.connect(url, max_size=None) as ws:
        for i in range(20):
            await ws.send("hello %d" % i)
            got = await ws.recv()
            assert got == "hello %d" % i, got
        big = bytes(range(256)) * 8192  # 2 MB, both ways through the tunnel
        await ws.send(big)
        got = await ws.recv()
        assert got == big, len(got)
        await ws.send("push 5")
        for i in range(5):
            got = await ws.recv()
            assert got == "pushed %d" % i, got
    print("ok", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        asyncio.run(serve(int(sys.argv[2])))
    else:
        asyncio.run(client(sys.argv[2]))
