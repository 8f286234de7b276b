"""A stdio MCP host on the official Python SDK, as Claude Desktop is one: it starts
`argv[1] bridge argv[3:]` (the bridge binary, then the proxy's URL) with the SDK's stdio
client, the bridge's stderr going to the file argv[2]. It prints one JSON line when the session is up,
then runs each line of its stdin as a command and prints one JSON line with what it saw:

    call NAME JSON_ARGS   call a tool: its text, isError, progress times, log notifications
    logs                  the log notifications received so far
    many N                N more hosts, each with its own bridge, started at once: each
                          initializes and calls list_calendars

It answers elicitation with "confirmed" and sampling with a fixed text. Anything on the
bridge's stdout that is not a JSON-RPC message reaches the SDK as an exception: those are
counted and reported as "problems" in every line."""

import asyncio
import contextlib
import json
import sys
import time

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.types import CreateMessageResult, ElicitResult, TextContent

binary, errlog_path, bridge_args = sys.argv[1], sys.argv[2], sys.argv[3:]
problems = []
logs = []


async def on_message(message):
    if isinstance(message, Exception):
        problems.append(repr(message))


async def on_log(params):
    logs.append(params.data)


async def on_elicit(context, params):
    return ElicitResult(action="accept", content={"confirmed": True})


async def on_sampling(context, params):
    return CreateMessageResult(role="assistant", model="test",
                               content=TextContent(type="text", text="short"))


def texts(result):
    return [item.text for item in result.content if item.type == "text"]


def report(**fields):
    print(json.dumps({**fields, "problems": problems}), flush=True)


@contextlib.asynccontextmanager
async def host(errlog):
    params = StdioServerParameters(command=binary, args=["bridge", *bridge_args])
    async with stdio_client(params, errlog=errlog) as (read, write):
        async with ClientSession(read, write, message_handler=on_message, logging_callback=on_log,
                                 elicitation_callback=on_elicit, sampling_callback=on_sampling) as session:
            await session.initialize()
            yield session


async def one_host(errlog):
    async with host(errlog) as session:
        result = await session.call_tool("list_calendars", {})
        return texts(result)


async def main():
    with open(errlog_path, "a") as errlog:
        async with host(errlog) as session:
            tools = await session.list_tools()
            report(tools=sorted(t.name for t in tools.tools))
            loop = asyncio.get_running_loop()
            while line := (await loop.run_in_executor(None, sys.stdin.readline)).strip():
                command, _, rest = line.partition(" ")
                if command == "call":
                    name, _, arguments = rest.partition(" ")
                    started = time.monotonic()
                    progress_at = []

                    async def progress(done, total, message):
                        progress_at.append(time.monotonic() - started)

                    result = await session.call_tool(name, json.loads(arguments or "{}"),
                                                     progress_callback=progress)
                    report(result=texts(result), error=result.isError, progress_at=progress_at,
                           result_at=time.monotonic() - started, logs=logs)
                elif command == "logs":
                    report(logs=logs)
                elif command == "many":
                    results = await asyncio.gather(*(one_host(errlog) for _ in range(int(rest))))
                    report(results=results)


asyncio.run(asyncio.wait_for(main(), timeout=120))
