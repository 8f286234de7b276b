"""An MCP server on the official Python SDK (FastMCP, Streamable HTTP) that, like the seed's
backend, accepts only the current token in X-Google-MCP-Token: the token the test keeps in the
file named by argv[1]. Listens on 127.0.0.1, port argv[2]."""

import asyncio
import pathlib
import sys

import uvicorn
from mcp.server.fastmcp import Context, FastMCP

token_file = pathlib.Path(sys.argv[1])
port = int(sys.argv[2])
mcp = FastMCP("calendar", host="127.0.0.1", port=port, log_level="WARNING")


@mcp.tool()
def list_calendars() -> list[str]:
    """The calendars this agent may book in."""
    return ["Team calendar", "On-call"]


@mcp.tool()
async def sync_calendar(steps: int, ctx: Context) -> str:
    """A long job that reports its progress as it goes."""
    for step in range(1, steps + 1):
        await ctx.report_progress(step, steps, f"step {step} of {steps}")
        await asyncio.sleep(0.4)
    return f"synced in {steps} steps"


class RequireCurrentToken:
    """401 to any HTTP request without the current token, as the seed's backend answers."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            sent = dict(scope["headers"]).get(b"x-google-mcp-token", b"").decode()
            if sent != token_file.read_text():
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"application/json")]})
                await send({"type": "http.response.body", "body": b'{"detail":"Invalid or expired MCP token"}'})
                return
        await self.app(scope, receive, send)


uvicorn.run(RequireCurrentToken(mcp.streamable_http_app()), host="127.0.0.1", port=port, log_level="warning")
