// A real OAuth 2.0 authorization server for the tests: panva's certified oidc-provider (npm),
// on 127.0.0.1, with what the daemon's oauth2 source uses switched on: client credentials,
// the device authorization grant, dynamic client registration, resource indicators, refresh
// token rotation (its default for public clients, with reuse detection), and introspection, so
// that a fake upstream can accept only live access tokens. Its development login pages
// (devInteractions) can be driven over HTTP.
//
//   node provider.mjs NODE_MODULES PORT DIR [ACCESS_TOKEN_SECONDS]
//
// NODE_MODULES is where scripts/test installed oidc-provider (an ES module is found from the
// importing file's directory only, and this one lives in the source tree).
// DIR receives the private keys of the private_key_jwt clients (rsa.pem, ec.pem, PKCS#8) and
// clients.json (ids and secrets); a line "ready ISSUER" on stdout says it listens.

import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [modules, port, dir, ttlArg] = process.argv.slice(2);
const { default: Provider } = await import(pathToFileURL(join(modules, 'oidc-provider', 'lib', 'index.js')).href);
const accessTokenTtl = Number(ttlArg ?? 300);
const issuer = `http://127.0.0.1:${port}`;

function keyPair(type, options, file) {
  const { privateKey, publicKey } = generateKeyPairSync(type, options);
  writeFileSync(join(dir, file), privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  return publicKey.export({ format: 'jwk' });
}

const rsa = keyPair('rsa', { modulusLength: 2048 }, 'rsa.pem');
const ec = keyPair('ec', { namedCurve: 'P-256' }, 'ec.pem');

const service = (id, method, extra = {}) => ({
  client_id: id,
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
  token_endpoint_auth_method: method,
  ...extra,
});

const clients = [
  service('service-basic', 'client_secret_basic', { client_secret: 'basic-secret-0123456789' }),
  service('service-post', 'client_secret_post', { client_secret: 'post-secret-0123456789' }),
  service('service-rsa', 'private_key_jwt', { jwks: { keys: [{ ...rsa, kid: 'rsa-1', use: 'sig', alg: 'RS256' }] } }),
  service('service-ec', 'private_key_jwt', { jwks: { keys: [{ ...ec, kid: 'ec-1', use: 'sig', alg: 'ES256' }] } }),
  // A host's login: a public client (refresh tokens rotate at every use).
  {
    client_id: 'host-public',
    application_type: 'native',
    token_endpoint_auth_method: 'none',
    grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
    response_types: ['code'],
    redirect_uris: ['http://127.0.0.1/callback'],
  },
  // The MCP upstream, which introspects the tokens it is sent.
  service('upstream', 'client_secret_basic', { client_secret: 'upstream-secret-0123456789', grant_types: [] }),
];
writeFileSync(join(dir, 'clients.json'), JSON.stringify(clients.map(({ client_id, client_secret }) => ({ client_id, client_secret }))));

const provider = new Provider(issuer, {
  clients,
  // The daemon's users log in through the development pages: any name, no password.
  findAccount: (_ctx, sub) => ({ accountId: sub, claims: () => ({ sub }) }),
  scopes: ['openid', 'offline_access', 'calendar'],
  // A refresh token for every grant that can have one, offline_access or not (MCP servers
  // issue them for the session's lifetime).
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  pkce: { required: () => true },
  ttl: {
    AccessToken: accessTokenTtl,
    ClientCredentials: accessTokenTtl,
    DeviceCode: 600,
    RefreshToken: 24 * 3600,
    Grant: 24 * 3600,
    Session: 24 * 3600,
    Interaction: 600,
  },
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    deviceFlow: { enabled: true },
    registration: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: (_ctx, _client, oneOf) => oneOf,
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, resource) => ({
        scope: 'calendar',
        audience: resource,
        accessTokenTTL: accessTokenTtl,
        accessTokenFormat: 'opaque',
      }),
    },
  },
  // Loopback over plain http, as in the tests (RFC 8252 §8.3 allows it for redirects too).
  clientBasedCORS: () => true,
});
provider.proxy = false;

// For the tests of the refresh path without a login: POST /test/refresh-token?resource=R mints
// a refresh token for `host-public`, as a login would (a grant for alice with offline_access
// and the resource's calendar scope). The login flows are tested through their own pages.
provider.use(async (ctx, next) => {
  if (ctx.method !== 'POST' || ctx.path !== '/test/refresh-token') {
    await next();
    return;
  }
  const resource = ctx.query.resource;
  const client = await provider.Client.find('host-public');
  const grant = new provider.Grant({ accountId: 'alice', clientId: client.clientId });
  grant.addOIDCScope('openid offline_access');
  if (resource) grant.addResourceScope(resource, 'calendar');
  const grantId = await grant.save();
  const token = new provider.RefreshToken({
    client,
    accountId: 'alice',
    grantId,
    gty: 'authorization_code',
    scope: resource ? 'openid offline_access calendar' : 'openid offline_access',
    ...(resource ? { resource } : {}),
  });
  ctx.body = { refresh_token: await token.save() };
});

// What the token endpoint saw, for the tests' "zero invalid_grant, no refresh token presented
// twice, one refresh per rotation": GET /test/stats.
const stats = { grants: {}, errors: {}, refresh_presented: 0, refresh_reused: 0 };
const presented = new Set();
const countGrant = (ctx, error) => {
  const { grant_type: grantType, refresh_token: refreshToken } = ctx.oidc.params ?? {};
  const key = grantType ?? 'unknown';
  stats.grants[key] = (stats.grants[key] ?? 0) + 1;
  if (error) stats.errors[error.error ?? error.message] = (stats.errors[error.error ?? error.message] ?? 0) + 1;
  if (refreshToken) {
    stats.refresh_presented += 1;
    if (presented.has(refreshToken)) stats.refresh_reused += 1;
    presented.add(refreshToken);
  }
};
provider.on('grant.success', (ctx) => countGrant(ctx));
provider.on('grant.error', (ctx, error) => countGrant(ctx, error));
provider.use(async (ctx, next) => {
  if (ctx.method === 'GET' && ctx.path === '/test/stats') {
    ctx.body = stats;
    return;
  }
  await next();
});

provider.listen(Number(port), '127.0.0.1', () => {
  console.log(`ready ${issuer}`);
});
