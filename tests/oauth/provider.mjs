// A real OAuth 2.0 authorization server for the tests: panva's certified oidc-provider (npm),
// on 127.0.0.1, with what the daemon's oauth2 source uses switched on: client credentials,
// the device authorization grant, dynamic client registration, resource indicators, refresh
// token rotation (its default for public clients, with reuse detection), and introspection, so
// that a fake upstream can accept only live access tokens. Its development login pages
// (devInteractions) can be driven over HTTP. RFC 8693 token exchange is added through the
// provider's documented extension point (`registerGrantType`): a subject JWT signed by the
// "cluster" key it writes (subject.pem), or an access token it issued, exchanged for an access
// token that introspection shows as `exchanged_from` the subject.
//
//   node provider.mjs NODE_MODULES PORT DIR [ACCESS_TOKEN_SECONDS]
//
// NODE_MODULES is where scripts/test installed oidc-provider (an ES module is found from the
// importing file's directory only, and this one lives in the source tree).
// DIR receives the private keys of the private_key_jwt clients (rsa.pem, ec.pem, PKCS#8) and
// clients.json (ids and secrets); a line "ready ISSUER" on stdout says it listens.

import { createPublicKey, generateKeyPairSync, verify } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [modules, port, dir, ttlArg] = process.argv.slice(2);
const { default: Provider } = await import(pathToFileURL(join(modules, 'oidc-provider', 'lib', 'index.js')).href);
const { InvalidGrant, InvalidRequest } = await import(
  pathToFileURL(join(modules, 'oidc-provider', 'lib', 'helpers', 'errors.js')).href
);
const accessTokenTtl = Number(ttlArg ?? 300);
const issuer = `http://127.0.0.1:${port}`;

function keyPair(type, options, file) {
  const { privateKey, publicKey } = generateKeyPairSync(type, options);
  writeFileSync(join(dir, file), privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  return publicKey.export({ format: 'jwk' });
}

const rsa = keyPair('rsa', { modulusLength: 2048 }, 'rsa.pem');
const ec = keyPair('ec', { namedCurve: 'P-256' }, 'ec.pem');
// The key a workload's identity issuer signs with (a cluster's service-account tokens): the
// tests sign subject tokens with it, and the exchange verifies them with its public half.
const subjectKey = createPublicKey({ key: keyPair('rsa', { modulusLength: 2048 }, 'subject.pem'), format: 'jwk' });
const SUBJECT_ISSUER = 'https://kubernetes.default.svc';
const SUBJECT_AUDIENCE = 'sts.test';

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
  // A workload that exchanges its own identity (RFC 8693).
  service('exchanger', 'client_secret_basic', {
    client_secret: 'exchange-secret-0123456789',
    grant_types: ['urn:ietf:params:oauth:grant-type:token-exchange'],
  }),
  // The MCP upstream, which introspects the tokens it is sent.
  service('upstream', 'client_secret_basic', { client_secret: 'upstream-secret-0123456789', grant_types: [] }),
];
writeFileSync(join(dir, 'clients.json'), JSON.stringify(clients.map(({ client_id, client_secret }) => ({ client_id, client_secret }))));

const exchangeClaims = new WeakMap();
const provider = new Provider(issuer, {
  clients,
  // The daemon's users log in through the development pages: any name, no password.
  findAccount: (_ctx, sub) => ({ accountId: sub, claims: () => ({ sub }) }),
  scopes: ['openid', 'offline_access', 'calendar'],
  // A refresh token for every grant that can have one, offline_access or not (MCP servers
  // issue them for the session's lifetime).
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  pkce: { required: () => true },
  // What an exchanged token was exchanged from (set by the token exchange below), for
  // introspection.
  extraTokenClaims: async (_ctx, token) => exchangeClaims.get(token),
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

// RFC 8693 §2: token exchange. A subject JWT must be RS256 by the subject key, for
// SUBJECT_AUDIENCE, unexpired; a subject access token must be live here. The answer is a
// Bearer access token (N_A when an ID token is asked for, §2.2.1), with a refresh token the
// daemon must not keep. GET /test/exchanges lists what each exchange presented.
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const TYPE = (name) => `urn:ietf:params:oauth:token-type:${name}`;
const exchanges = [];
function verifiedSubject(jwt) {
  const parts = String(jwt).split('.');
  if (parts.length !== 3) throw new InvalidGrant('subject_token is not a JWT');
  const [header, claims] = parts.slice(0, 2).map((p) => JSON.parse(Buffer.from(p, 'base64url')));
  const signed = verify('RSA-SHA256', Buffer.from(`${parts[0]}.${parts[1]}`), subjectKey, Buffer.from(parts[2], 'base64url'));
  if (header.alg !== 'RS256' || !signed) throw new InvalidGrant('subject_token signature invalid');
  if (claims.iss !== SUBJECT_ISSUER || claims.aud !== SUBJECT_AUDIENCE) throw new InvalidGrant('subject_token iss or aud');
  if (!(claims.exp > Date.now() / 1000)) throw new InvalidGrant('subject_token expired');
  return claims.sub;
}
provider.registerGrantType(
  TOKEN_EXCHANGE,
  async (ctx) => {
    const p = ctx.oidc.params;
    let subject;
    if (p.subject_token_type === TYPE('jwt')) {
      subject = verifiedSubject(p.subject_token);
    } else if (p.subject_token_type === TYPE('access_token')) {
      const held = await provider.ClientCredentials.find(p.subject_token);
      if (!held || held.isExpired) throw new InvalidGrant('subject_token is not a live access token');
      subject = held.clientId;
    } else {
      throw new InvalidRequest(`unsupported subject_token_type ${p.subject_token_type}`);
    }
    const token = new provider.ClientCredentials({ client: ctx.oidc.client, scope: p.scope || undefined });
    exchangeClaims.set(token, { exchanged_from: subject, ...(p.audience ? { exchanged_for: p.audience } : {}) });
    exchanges.push({
      subject,
      subject_token_type: p.subject_token_type,
      requested_token_type: p.requested_token_type ?? null,
      audience: p.audience ?? null,
      actor_token_type: p.actor_token_type ?? null,
      actor: p.actor_token ? verifiedSubject(p.actor_token) : null,
    });
    const idToken = p.requested_token_type === TYPE('id_token');
    ctx.body = {
      access_token: await token.save(),
      issued_token_type: idToken ? TYPE('id_token') : TYPE('access_token'),
      token_type: idToken ? 'N_A' : 'Bearer',
      expires_in: token.expiration,
      refresh_token: `exchange-refresh-never-kept-${exchanges.length}`,
    };
  },
  ['subject_token', 'subject_token_type', 'requested_token_type', 'audience', 'actor_token', 'actor_token_type', 'scope', 'resource'],
  ['audience', 'resource'],
);
provider.use(async (ctx, next) => {
  if (ctx.method === 'GET' && ctx.path === '/test/exchanges') {
    ctx.body = exchanges;
    return;
  }
  await next();
});

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
