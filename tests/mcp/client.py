"""An MCP client on the official Python SDK that knows nothing of tokens: it talks to the URL
in argv[1] (the proxy). It prints one JSON line when its session is up, waits for a line on
stdin (the test rotates the token meanwhile), calls again, runs a tool that reports progress,
and prints a last JSON line with what it saw and when."""

import asyncio
import json
import sys
import time

from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client


def texts(result):
    return [item.text for item in result.content]


async def session(url):
    async with streamablehttp_client(url) as (read, write, _):
        async with ClientSession(read, write) as client:
            await client.initialize()
            tools = await client.list_tools()
            first = await client.call_tool("list_calendars", {})
            print(json.dumps({"tools": sorted(t.name for t in tools.tools), "first": texts(first),
                              "first_error": first.isError}), flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

            second = await client.call_tool("list_calendars", {})
            started = time.monotonic()
            progress_at = []

            async def progress(done, total, message):
                progress_at.append(time.monotonic() - started)

            synced = await client.call_tool("sync_calendar", {"steps": 3}, progress_callback=progress)
            print(json.dumps({"second": texts(second), "second_error": second.isError,
                              "synced": texts(synced), "progress_at": progress_at,
                              "result_at": time.monotonic() - started}), flush=True)


asyncio.run(asyncio.wait_for(session(sys.argv[1]), timeout=60))
