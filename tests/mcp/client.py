"""An MCP client made with the official Python SDK (`mcp` on PyPI), driven by
tests/all/mcp.rs against a live Warden at /mcp. It prints what it saw as one
JSON object on its last line; the Rust test makes the assertions.

usage: client.py URL KEY MODE SCENARIO   (KEY "-" sends no Authorization;
MODE auto | legacy; SCENARIO tour | connect | follow)
"""

import asyncio
import json
import sys

import httpx2
import mcp_types as types
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client


def connect(url, key, mode, **kwargs):
    headers = {} if key == "-" else {"Authorization": f"Bearer {key}"}
    http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=120))
    return http, Client(streamable_http_client(url, http_client=http), mode=mode, **kwargs)


def call_view(result):
    return {
        "is_error": bool(result.is_error),
        "structured": result.structured_content,
        "text": result.content[0].text if result.content else None,
        "meta": result.meta,
    }


async def tour(url, key, mode):
    seen = {}
    http, client = connect(url, key, mode)
    async with http, client as c:
        seen["protocol"] = c.protocol_version
        tools = (await c.list_tools()).tools
        seen["tools"] = {
            t.name: {
                "description": t.description,
                "input_schema": t.input_schema,
                "output_schema": t.output_schema,
            }
            for t in tools
        }
        seen["echo"] = call_view(await c.call_tool("echo", {"hello": "mcp"}))
        seen["typed"] = call_view(await c.call_tool("typed", {"input": "plain text"}))
        seen["crash"] = call_view(await c.call_tool("crash", {}))
        seen["invalid"] = call_view(await c.call_tool("strict", {"wrong": 1}))
        recent = await c.call_tool("list_recent_executions", {"agent": "echo", "limit": 5})
        seen["recent"] = call_view(recent)
        execution_id = seen["echo"]["meta"]["warden/execution_id"]
        seen["result"] = call_view(await c.call_tool("get_execution_result", {"execution_id": execution_id}))
        seen["summary"] = call_view(await c.call_tool("get_agent_activity_summary", {"agent": "echo"}))
        seen["missing"] = call_view(await c.call_tool("get_execution_result", {"execution_id": "exec_nope"}))
        try:
            await c.call_tool("no_such_tool", {})
            seen["unknown_tool"] = "answered"
        except MCPError as e:
            seen["unknown_tool"] = e.code
    return seen


async def connect_and_run(url, key, mode):
    http, client = connect(url, key, mode)
    try:
        async with http, client as c:
            tools = sorted(t.name for t in (await c.list_tools()).tools)
            try:
                run = call_view(await c.call_tool("echo", {"from": "connect"}))
            except MCPError as e:
                run = {"is_error": True, "code": e.code}
        return {"refused": False, "tools": tools, "run": run}
    except BaseException as group:  # the SDK raises from its task group
        e = group
        while isinstance(e, BaseExceptionGroup):
            e = e.exceptions[0]
        return {"refused": True, "error": type(e).__name__, "code": getattr(e, "code", None)}


async def follow(url, key, mode):
    changed = asyncio.Event()

    async def on_message(message):
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    http, client = connect(url, key, mode, message_handler=on_message)
    async with http, client as c:
        before = [t.name for t in (await c.list_tools()).tools]
        if mode == "legacy":
            print("ready", flush=True)
            await asyncio.wait_for(changed.wait(), 20)
        else:
            async with c.listen(tools_list_changed=True) as subscription:
                print("ready", flush=True)
                async for _ in subscription:
                    break
        after = [t.name for t in (await c.list_tools(cache_mode="refresh")).tools]
        protocol = c.protocol_version
    return {"protocol": protocol, "before": before, "after": after}


async def main():
    url, key, mode, scenario = sys.argv[1:5]
    seen = await {"tour": tour, "connect": connect_and_run, "follow": follow}[scenario](url, key, mode)
    print(json.dumps(seen, default=str), flush=True)


asyncio.run(main())
