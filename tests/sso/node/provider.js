// A real OpenID provider for tests/sso/: panva's oidc-provider (OpenID
// certified), on a loopback port chosen by the OS. Prints one JSON line,
// {"issuer": ...}, once it listens; exits when its stdin closes.
//
// Clients: "homeserver" (client_secret_basic) and "homeserver-post"
// (client_secret_post); both native, so any loopback port of the
// registered redirect URI is accepted (RFC 8252 7.3). "tampering" is the
// same client behind a provider that swaps the nonce of every authorization
// request: its ID tokens carry a nonce the relying party never sent.
//
// Sign-in uses oidc-provider's own login and consent forms (devInteractions):
// any login name signs in as that account.
import http from 'node:http';
import Provider from 'oidc-provider';

const REDIRECT = 'http://127.0.0.1/_synapse/client/oidc/callback';
const NAMES = { alice: 'Alice Liddell', bob: 'Bob Builder' };
const GROUPS = { alice: ['staff'] };

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const client = (id, method) => ({
    client_id: id,
    client_secret: `${id}-secret`,
    application_type: 'native',
    redirect_uris: [REDIRECT],
    token_endpoint_auth_method: method,
    grant_types: ['authorization_code'],
    response_types: ['code'],
  });
  const provider = new Provider(issuer, {
    clients: [client('homeserver', 'client_secret_basic'),
      client('homeserver-post', 'client_secret_post'),
      client('tampering', 'client_secret_basic')],
    claims: {
      openid: ['sub'],
      profile: ['name', 'preferred_username', 'groups'],
      email: ['email', 'email_verified'],
    },
    // the scopes' claims in the ID token itself, as Keycloak sends them
    conformIdTokenClaims: false,
    cookies: { keys: ['tests-only-cookie-key'] },
    features: { devInteractions: { enabled: true } },
    async findAccount(ctx, id) {
      return {
        accountId: id,
        async claims() {
          return {
            sub: `subject-${id}`,
            preferred_username: id,
            name: NAMES[id] ?? id,
            email: `${id}@example.org`,
            email_verified: true,
            groups: GROUPS[id] ?? [],
          };
        },
      };
    },
  });
  provider.use(async (ctx, next) => {
    if (ctx.path === '/auth' && ctx.query.client_id === 'tampering') {
      ctx.query = { ...ctx.query, nonce: 'a-nonce-the-relying-party-never-sent' };
    }
    await next();
  });
  server.on('request', provider.callback());
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
