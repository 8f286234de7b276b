"""An MCP server on the official Python SDK (FastMCP, Streamable HTTP) that, like the seed's
backend, accepts only the current token in X-Google-MCP-Token: the token the test keeps in the
file named by argv[1]. Listens on 127.0.0.1, port argv[2]. Refuses other tokens with 401, or with
argv[3] = "403" as servers do that answer an expired token with 403 and a Bearer challenge (a
challenge that would send an MCP host into OAuth discovery if it reached it)."""

import asyncio
import pathlib
import sys

import uvicorn
from mcp.server.fastmcp import Context, FastMCP

token_file = pathlib.Path(sys.argv[1])
port = int(sys.argv[2])
refusal = int(sys.argv[3]) if len(sys.argv) > 3 else 401
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
    """401 (or 403) to any HTTP request without the current token, as the seed's backend answers."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            sent = dict(scope["headers"]).get(b"x-google-mcp-token", b"").decode()
            if sent != token_file.read_text():
                headers = [(b"content-type", b"application/json")]
                if refusal == 403:
                    headers.append((b"www-authenticate", b'Bearer error="invalid_token", '
                                    b'resource_metadata="http://127.0.0.1:%d/.well-known/oauth-protected-resource"' % port))
                await send({"type": "http.response.start", "status": refusal, "headers": headers})
                await send({"type": "http.response.body", "body": b'{"detail":"Invalid or expired MCP token"}'})
                return
        await self.app(scope, receive, send)


if __name__ == "__main__":
    uvicorn.run(RequireCurrentToken(mcp.streamable_http_app()), host="127.0.0.1", port=port, log_level="warning")
