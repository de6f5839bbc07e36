// A Node service that accepts authbooks access tokens, verified with `jose`.
//
// - Keys: auth-service's JWKS (`jwks_uri` from its discovery document), chosen by `kid`,
//   refetched on an unknown `kid` (createRemoteJWKSet, at most once per JWKS_REFETCH_COOLDOWN).
// - Checks: RS256 only, signature, `iss` (the discovery `issuer`), `aud`, `exp`, `nbf`, and an
//   access token (`type`); then revocation, from a local replica of auth-service's revocation
//   stream (revocations.mjs).
//
// Settings (environment): AUTH_ISSUER (required, e.g. http://127.0.0.1:8081), CLIENT_ID and
// CLIENT_SECRET (a client with the scope `revocations:read`), JWT_AUDIENCE (default
// `authbooks-api`), REVOCATIONS_URL (default AUTH_ISSUER + /revocations), JWT_LEEWAY (seconds,
// default 30), JWKS_REFETCH_COOLDOWN (seconds, default 30), REVOCATION_STALENESS_MS (how long
// the revocation stream may be down before tokens are answered 503, default 5000), LISTEN_ADDR
// (default 127.0.0.1:3000).
import http from 'node:http';
import { createRemoteJWKSet, errors, jwtVerify } from 'jose';
import { RevocationFeed, RevocationsUnavailable } from './revocations.mjs';

const env = process.env;
const issuer = env.AUTH_ISSUER;
const audience = env.JWT_AUDIENCE || 'authbooks-api';

/** The issuer's discovery document, retried while auth-service is starting. */
async function discover(wait = 30_000) {
  const deadline = Date.now() + wait;
  for (;;) {
    try {
      const response = await fetch(`${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`);
      if (!response.ok) throw new Error(`discovery: ${response.status}`);
      const document = await response.json();
      // OpenID Connect Discovery 1.0, section 4.3.
      if (document.issuer !== issuer) throw new Error(`discovery names issuer ${document.issuer}`);
      return document;
    } catch (error) {
      if (Date.now() > deadline || error.message.startsWith('discovery names')) throw error;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
}

const discovery = await discover();
const remoteKeys = createRemoteJWKSet(new URL(discovery.jwks_uri), {
  cooldownDuration: 1000 * Number(env.JWKS_REFETCH_COOLDOWN || 30),
});
// The key is chosen by `kid` only: a token without one is refused (jose alone would fall back
// to the only key of the right type).
const jwks = (header, token) => {
  if (typeof header.kid !== 'string') throw new errors.JWSInvalid('the token has no kid');
  return remoteKeys(header, token);
};
const feed = new RevocationFeed({
  revocationsUrl: env.REVOCATIONS_URL || `${issuer.replace(/\/+$/, '')}/revocations`,
  tokenEndpoint: discovery.token_endpoint,
  clientId: env.CLIENT_ID,
  clientSecret: env.CLIENT_SECRET,
  reconnectGraceMs: Number(env.REVOCATION_STALENESS_MS || 5000),
}).start();

class Refused extends Error {
  constructor(status, code, message) {
    super(message);
    Object.assign(this, { status, code });
  }
}

/** The verified claims of the request's bearer access token, or a Refused error. */
async function authenticate(request) {
  const match = /^Bearer +(\S+)$/i.exec(request.headers.authorization ?? '');
  if (!match) throw new Refused(401, 'missing_token', 'no bearer token');
  let payload;
  try {
    ({ payload } = await jwtVerify(match[1], jwks, {
      issuer,
      audience,
      algorithms: ['RS256'],
      requiredClaims: ['sub', 'jti', 'iat', 'nbf', 'exp'],
      clockTolerance: Number(env.JWT_LEEWAY || 30),
    }));
  } catch (error) {
    if (error.code === 'ERR_JWT_EXPIRED') throw new Refused(401, 'token_expired', error.message);
    // The JWKS could not be fetched (network error, timeout, non-200 answer).
    if (!error.code || ['ERR_JWKS_TIMEOUT', 'ERR_JWKS_INVALID', 'ERR_JOSE_GENERIC'].includes(error.code)) {
      throw new Refused(503, 'unavailable', 'the keys could not be fetched');
    }
    throw new Refused(401, 'invalid_token', error.message);
  }
  if (payload.type !== 'access') throw new Refused(401, 'invalid_token', 'not an access token');
  try {
    if (feed.isRevoked(payload)) throw new Refused(401, 'token_revoked', 'the token has been revoked');
  } catch (error) {
    if (error instanceof RevocationsUnavailable) throw new Refused(503, 'unavailable', error.message);
    throw error;
  }
  return payload;
}

function send(response, status, body, headers = {}) {
  response.writeHead(status, { 'content-type': 'application/json', ...headers });
  response.end(JSON.stringify(body));
}

const server = http.createServer(async (request, response) => {
  const { pathname } = new URL(request.url, 'http://localhost');
  try {
    if (request.method === 'GET' && pathname === '/hello') {
      const claims = await authenticate(request);
      return send(response, 200, { sub: claims.sub, username: claims.username ?? null });
    }
    if (request.method === 'GET' && pathname === '/readyz') {
      if (feed.ready()) return send(response, 200, { status: 'ready' });
      return send(response, 503, { error: 'unavailable', message: 'the revocation list is not loaded yet' });
    }
    return send(response, 404, { error: 'not_found', message: 'no such route' });
  } catch (error) {
    if (!(error instanceof Refused)) {
      console.error(error);
      return send(response, 500, { error: 'internal', message: 'internal error' });
    }
    const headers = error.status === 401
      ? { 'www-authenticate': `Bearer error="invalid_token", error_description="${error.code}"` }
      : {};
    return send(response, error.status, { error: error.code, message: error.message }, headers);
  }
});

const listen = env.LISTEN_ADDR || '127.0.0.1:3000';
const colon = listen.lastIndexOf(':');
server.listen(Number(listen.slice(colon + 1)), listen.slice(0, colon), () => {
  console.log(`listening on ${listen}`);
});
