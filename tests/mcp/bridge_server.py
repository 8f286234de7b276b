"""The calendar server of server.py (argv: token file, port) with what a stdio host's bridge
must carry besides plain calls: a tool that asks the client to confirm (elicitation), one that
asks it to write (sampling), notifications on the session's GET stream with the stream dropped
in the middle, and a tool whose POST stream the server closes before the result (polling). An
event store makes every stream resumable with Last-Event-ID, as MCP 2025-11-25 describes."""

import asyncio
import logging

import uvicorn
from mcp.server.fastmcp import Context, FastMCP
from mcp.server.streamable_http import EventMessage, EventStore
from mcp.types import SamplingMessage, TextContent
from pydantic import BaseModel

import server


class MemoryEventStore(EventStore):
    """Every event of every stream, in order; ids are their positions."""

    def __init__(self):
        self.events = []

    async def store_event(self, stream_id, message):
        self.events.append((stream_id, message))
        return str(len(self.events))

    async def replay_events_after(self, last_event_id, send_callback):
        after = int(last_event_id)
        if not 0 < after <= len(self.events):
            return None
        stream_id = self.events[after - 1][0]
        for position, (stream, message) in enumerate(self.events[after:], start=after + 1):
            if stream == stream_id and message is not None:
                await send_callback(EventMessage(message, str(position)))
        return stream_id


mcp = FastMCP("calendar", host="127.0.0.1", port=server.port, log_level="WARNING",
              event_store=MemoryEventStore(), retry_interval=100)
mcp.add_tool(server.list_calendars)
mcp.add_tool(server.sync_calendar)


class Confirmation(BaseModel):
    confirmed: bool


@mcp.tool()
async def book(title: str, ctx: Context) -> str:
    """Books a meeting once the user confirms it."""
    answer = await ctx.elicit(f"Book {title!r}?", schema=Confirmation)
    if answer.action == "accept" and answer.data.confirmed:
        return f"booked {title}"
    return f"not booked: {answer.action}"


@mcp.tool()
async def summarize(text: str, ctx: Context) -> str:
    """Asks the client's model for a summary."""
    result = await ctx.session.create_message(
        messages=[SamplingMessage(role="user", content=TextContent(type="text", text=text))],
        max_tokens=20, related_request_id=ctx.request_id)
    return f"summary: {result.content.text}"


@mcp.tool()
async def announce(count: int, ctx: Context) -> str:
    """Sends `count` log notifications outside any request (the GET stream), dropping that
    stream after the first half."""
    for n in range(count):
        if n == count // 2:
            await ctx.close_standalone_sse_stream()
        await ctx.session.send_log_message(level="info", data=f"announcement {n}", logger="calendar")
        await asyncio.sleep(0.05)
    return f"announced {count}"


@mcp.tool()
async def slow_job(ctx: Context) -> str:
    """Closes its own POST stream before the result: the client resumes it with a GET."""
    await ctx.report_progress(1, 2, "started")
    await ctx.close_sse_stream()
    await asyncio.sleep(0.5)
    await ctx.report_progress(2, 2, "finishing")
    return "job done"


if __name__ == "__main__":
    # Closing the standalone stream on purpose makes the SDK log its writer's end as an error.
    logging.getLogger("mcp.server.streamable_http").setLevel(logging.CRITICAL)
    uvicorn.run(server.RequireCurrentToken(mcp.streamable_http_app()), host="127.0.0.1", port=server.port,
                log_level="warning")
