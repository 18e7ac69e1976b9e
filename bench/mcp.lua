-- wrk script for bench/run: one MCP tools/call of the agent in $BENCH_TOOL per
-- request (Streamable HTTP, revision 2026-07-28: stateless, JSON answers), with
-- the tool's arguments in $BENCH_ARGS.
local tool = os.getenv("BENCH_TOOL")
wrk.method = "POST"
wrk.body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"' .. tool .. '","arguments":'
  .. os.getenv("BENCH_ARGS") .. ',"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28",'
  .. '"io.modelcontextprotocol/clientCapabilities":{}}}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["MCP-Protocol-Version"] = "2026-07-28"
wrk.headers["Mcp-Method"] = "tools/call"
wrk.headers["Mcp-Name"] = tool

