// openid-client (unmodified) against auth-service, configured from the discovery document alone:
// client_credentials grant, the token used on GET /revocations, then introspection and
// revocation of that token. Prints one JSON object with what it saw.
//
// Environment: ISSUER (auth-service's issuer URL), CLIENT_ID, CLIENT_SECRET,
// AUTH_METHOD (`client_secret_basic` or `client_secret_post`), DISCOVERY (`oidc`: the
// openid-configuration document, or `oauth2`: RFC 8414's oauth-authorization-server).
import * as client from 'openid-client';

const env = process.env;
const issuer = new URL(env.ISSUER);
const clientAuth = {
  client_secret_basic: client.ClientSecretBasic,
  client_secret_post: client.ClientSecretPost,
}[env.AUTH_METHOD](env.CLIENT_SECRET);

const execute = issuer.protocol === 'http:' ? [client.allowInsecureRequests] : [];
const config = await client.discovery(issuer, env.CLIENT_ID, undefined, clientAuth, {
  algorithm: env.DISCOVERY,
  execute,
});
const metadata = config.serverMetadata();

const requests = [];
// Record how each request authenticated, without changing it.
config[client.customFetch] = async (url, options) => {
  const body = options.body === undefined ? '' : String(options.body);
  requests.push({
    url,
    basic: /^Basic /.test(new Headers(options.headers).get('authorization') ?? ''),
    secretInBody: new URLSearchParams(body).has('client_secret'),
  });
  return fetch(url, options);
};

const token = await client.clientCredentialsGrant(config, { scope: 'revocations:read introspect' });

const feed = await fetch(new URL('/revocations', issuer.href.replace(/\/?$/, '/')), {
  headers: { authorization: `Bearer ${token.access_token}` },
});
const feedBody = await feed.json();

const introspected = await client.tokenIntrospection(config, token.access_token);
await client.tokenRevocation(config, token.access_token);
const afterRevocation = await client.tokenIntrospection(config, token.access_token);
const feedAfterRevocation = await fetch(new URL('/revocations', issuer.href.replace(/\/?$/, '/')), {
  headers: { authorization: `Bearer ${token.access_token}` },
});

console.log(JSON.stringify({
  issuer: metadata.issuer,
  token_endpoint: metadata.token_endpoint,
  token: {
    token_type: token.token_type,
    scope: token.scope,
    expires_in: token.expires_in,
    claims_sub: JSON.parse(Buffer.from(token.access_token.split('.')[1], 'base64url')).sub,
  },
  revocations: {
    status: feed.status,
    items_is_array: Array.isArray(feedBody.items),
    has_cursor: 'cursor' in feedBody,
  },
  introspected: { active: introspected.active, scope: introspected.scope, sub: introspected.sub,
    client_id: introspected.client_id },
  after_revocation: { active: afterRevocation.active, feed_status: feedAfterRevocation.status },
  requests,
}));
