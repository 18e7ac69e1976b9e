"""An MCP server made with the official Python SDK (`mcp` on PyPI, its
MCPServer), which a Warden guest reaches through its manifest's `mcp_servers`
in tests/all/mcp.rs. It requires `Authorization: Bearer <token>` (the token is
its first argument), listens on 127.0.0.1 at a free port and prints
`PORT=<port>` once it serves.

usage: server.py TOKEN
"""

import asyncio
import logging
import sys
from typing import TypedDict

import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from starlette.responses import JSONResponse

TOKEN = sys.argv[1]
logging.getLogger("mcp").setLevel(logging.WARNING)
server = MCPServer("calc", version="1.0.0")


class Sum(TypedDict):
    sum: int


@server.tool(description="Adds two whole numbers.")
def add(a: int, b: int) -> Sum:
    return {"sum": a + b}


@server.tool(description="Always fails.")
def boom(why: str = "no reason") -> str:
    raise ToolError(f"boom: {why}")


@server.tool(description="Says the traceparent its HTTP request came with.")
def traced(ctx: Context) -> str:
    request = ctx.request_context.request
    return request.headers.get("traceparent", "none") if request is not None else "none"


@server.tool(description="Not allowed to the agent.")
def secret() -> str:
    return "a secret"


class BearerAuth:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            sent = dict(scope["headers"]).get(b"authorization", b"").decode()
            if sent != f"Bearer {TOKEN}":
                response = JSONResponse({"error": "unauthorized"}, status_code=401)
                return await response(scope, receive, send)
        await self.app(scope, receive, send)


async def main():
    app = server.streamable_http_app(streamable_http_path="/mcp", host="127.0.0.1")
    app.add_middleware(BearerAuth)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
    http = uvicorn.Server(config)
    serving = asyncio.create_task(http.serve())
    while not http.started:
        await asyncio.sleep(0.05)
    print(f"PORT={http.servers[0].sockets[0].getsockname()[1]}", flush=True)
    await serving


asyncio.run(main())
