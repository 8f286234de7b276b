// Read the current token from mcp-token-sync in Node.js (no dependencies).
// Usage: node read_token.js   (socket: $MCP_TOKEN_SYNC_SOCKET)
const http = require("http");

const socketPath = process.env.MCP_TOKEN_SYNC_SOCKET || "/run/mcp-token-sync/api.sock";

http
  .get({ socketPath, path: "/v1/token" }, (res) => {
    let body = "";
    res.on("data", (chunk) => (body += chunk));
    res.on("end", () => {
      if (res.statusCode !== 200) {
        console.error(`mcp-token-sync answered ${res.statusCode}: ${body}`);
        process.exit(1);
      }
      const { token, version, expires_at } = JSON.parse(body);
      // Use `token` in your request headers; never log it.
      console.log(`version ${version}, ${token.length} characters, expires ${expires_at}`);
    });
  })
  .on("error", (err) => {
    console.error(`cannot reach mcp-token-sync at ${socketPath}: ${err.message}`);
    process.exit(1);
  });
