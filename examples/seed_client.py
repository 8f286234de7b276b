#!/usr/bin/env python3
"""The seed's MCP client pattern, with the token from mcp-token-sync instead of the backend.

The seed's client fetched the token from the backend itself and retried once on 401. Here the
client holds no backend credential and never fetches: it reads the token from the daemon's socket,
and when the API answers 401 it reports the version it used. The daemon refreshes once, however
many clients report, and answers every reporter with the fresh token.

Standard library only. Usage: seed_client.py URL   (socket: $MCP_TOKEN_SYNC_SOCKET)
"""

import http.client
import json
import os
import socket
import sys
import urllib.error
import urllib.request

DEFAULT_SOCKET = "/run/mcp-token-sync/api.sock"


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over the daemon's Unix socket."""

    def __init__(self, path, timeout=15):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


class TokenSource:
    """The current token, from mcp-token-sync."""

    def __init__(self, socket_path=None):
        self.path = socket_path or os.environ.get("MCP_TOKEN_SYNC_SOCKET", DEFAULT_SOCKET)
        self.current = None  # the /v1/token object: token, version, expires_at, ...

    def _call(self, method, path, body=None):
        conn = UnixHTTPConnection(self.path)
        try:
            conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        if response.status != 200:
            # An error body never holds the token: {"error": ..., "detail": ...}
            raise RuntimeError(f"mcp-token-sync answered {response.status}: {data.decode(errors='replace')}")
        return json.loads(data)

    def token(self):
        if self.current is None:
            self.current = self._call("GET", "/v1/token")
        return self.current["token"]

    def report_401(self):
        """The API rejected our token: tell the daemon which version, get the fresh one."""
        body = json.dumps({"version": self.current["version"]}) if self.current else ""
        self.current = self._call("POST", "/v1/report-401", body)
        return self.current["token"]


class GoogleCalendarMCPClient:
    def __init__(self, tokens):
        self.tokens = tokens

    def _send(self, method, url, token, body):
        request = urllib.request.Request(url, data=body, method=method, headers={"X-Google-MCP-Token": token})
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def make_authenticated_request(self, method, url, body=None):
        status, data = self._send(method, url, self.tokens.token(), body)
        if status == 401:
            # Once, as in the seed: the daemon refreshes (coalesced) and hands back the new token.
            status, data = self._send(method, url, self.tokens.report_401(), body)
        return status, data


if __name__ == "__main__":
    client = GoogleCalendarMCPClient(TokenSource())
    status, _ = client.make_authenticated_request("GET", sys.argv[1])
    print(status)
    sys.exit(0 if status == 200 else 1)
