#!/usr/bin/env python3
"""Read the current token from mcp-token-sync with httpx (pip install httpx)."""

import os

import httpx

socket_path = os.environ.get("MCP_TOKEN_SYNC_SOCKET", "/run/mcp-token-sync/api.sock")
transport = httpx.HTTPTransport(uds=socket_path)
with httpx.Client(transport=transport, base_url="http://localhost") as daemon:
    current = daemon.get("/v1/token").raise_for_status().json()
    # Use current["token"] in the X-Google-MCP-Token header; log only the version.
    print(f"version {current['version']}, expires {current['expires_at']}")
