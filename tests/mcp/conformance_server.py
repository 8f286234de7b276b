"""A reference server for the official MCP conformance suite's server scenarios
(@modelcontextprotocol/conformance 0.1.16), written on the official Python SDK (FastMCP,
Streamable HTTP) from the scenarios' own descriptions: the tools they call, with the answers
they expect, including a tool that asks the client something (sampling, elicitation) in the
middle of its call. Scenarios it does not implement fail directly and are not compared.
Listens on 127.0.0.1, port argv[1], path /mcp."""

import asyncio
import base64
import sys

from mcp.server.fastmcp import Context, FastMCP
from mcp.types import (
    AudioContent,
    EmbeddedResource,
    ImageContent,
    SamplingMessage,
    TextContent,
    TextResourceContents,
)
from pydantic import BaseModel

port = int(sys.argv[1])
mcp = FastMCP("mcp-conformance-test-server", host="127.0.0.1", port=port, log_level="WARNING")

# A 1x1 PNG and a tiny WAV, as the scenarios ask for "a minimal test image / audio".
PNG = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d49444154789c63f8cfc0f01f0005000201a5f6e1b10000000049454e44ae426082"
)).decode()
WAV = base64.b64encode(
    b"RIFF" + (36 + 2).to_bytes(4, "little") + b"WAVEfmt " + (16).to_bytes(4, "little")
    + (1).to_bytes(2, "little") + (1).to_bytes(2, "little") + (8000).to_bytes(4, "little")
    + (16000).to_bytes(4, "little") + (2).to_bytes(2, "little") + (16).to_bytes(2, "little")
    + b"data" + (2).to_bytes(4, "little") + b"\x00\x00"
).decode()


@mcp.tool()
def test_simple_text() -> str:
    return "This is a simple text response for testing."


@mcp.tool()
def test_image_content() -> list:
    return [ImageContent(type="image", data=PNG, mimeType="image/png")]


@mcp.tool()
def test_audio_content() -> list:
    return [AudioContent(type="audio", data=WAV, mimeType="audio/wav")]


@mcp.tool()
def test_embedded_resource() -> list:
    return [EmbeddedResource(type="resource", resource=TextResourceContents(
        uri="test://embedded-resource", mimeType="text/plain", text="This is an embedded resource content."))]


@mcp.tool()
def test_multiple_content_types() -> list:
    return [
        TextContent(type="text", text="Multiple content types test:"),
        ImageContent(type="image", data=PNG, mimeType="image/png"),
        EmbeddedResource(type="resource", resource=TextResourceContents(
            uri="test://mixed-content-resource", mimeType="application/json", text='{"test":"data","value":123}')),
    ]


@mcp.tool()
async def test_tool_with_logging(ctx: Context) -> str:
    await ctx.info("Tool execution started")
    await asyncio.sleep(0.05)
    await ctx.info("Tool processing data")
    await asyncio.sleep(0.05)
    await ctx.info("Tool execution completed")
    return "Tool with logging executed successfully"


@mcp.tool()
def test_error_handling() -> str:
    raise ValueError("This tool intentionally returns an error for testing")


@mcp.tool()
async def test_tool_with_progress(ctx: Context) -> str:
    for progress in (0, 50, 100):
        await ctx.report_progress(progress, 100)
        if progress < 100:
            await asyncio.sleep(0.05)
    return "Tool with progress executed successfully"


@mcp.tool()
async def test_sampling(prompt: str, ctx: Context) -> str:
    answer = await ctx.session.create_message(
        messages=[SamplingMessage(role="user", content=TextContent(type="text", text=prompt))],
        max_tokens=100,
        related_request_id=ctx.request_id,
    )
    return f"LLM response: {answer.content.text}"


class UserInfo(BaseModel):
    username: str
    email: str


@mcp.tool()
async def test_elicitation(message: str, ctx: Context) -> str:
    answer = await ctx.elicit(message=message, schema=UserInfo)
    return f"User response: action={answer.action}, content={getattr(answer, 'data', None)}"


if __name__ == "__main__":
    mcp.settings.streamable_http_path = "/mcp"
    mcp.run(transport="streamable-http")
