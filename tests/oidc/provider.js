// A real OpenID provider for ONYX's sign-in tests (npm's oidc-provider), on 127.0.0.1.
//
// Environment: PORT (0: any free port), ACCOUNTS (JSON: {"alice": {"groups": ["team-a"]}}),
// ID_TOKEN_TTL (seconds), REDIRECT_URIS (comma-separated). Its signing key is made at start,
// so a restart on the same port is a key rotation. Prints `issuer URL` once it listens.
// Sign-in is oidc-provider's development interaction: any account name, any password.
import crypto from 'node:crypto';
import http from 'node:http';
import Provider from 'oidc-provider';

// A signing key of its own each start, named by a fresh key id.
const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: crypto.randomUUID(), use: 'sig', alg: 'RS256' };

const accounts = JSON.parse(process.env.ACCOUNTS || '{}');
const server = http.createServer();
server.listen(Number(process.env.PORT || 0), '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    jwks: { keys: [signingKey] },
    clients: [{
      client_id: 'onyx',
      client_secret: 'onyx-secret',
      redirect_uris: (process.env.REDIRECT_URIS || 'http://127.0.0.1/cb').split(','),
      grant_types: ['authorization_code'],
      response_types: ['code'],
    }],
    ttl: {
      IdToken: Number(process.env.ID_TOKEN_TTL || 3600),
      Session: 3600,
      Grant: 3600,
      Interaction: 600,
      AuthorizationCode: 600,
    },
    claims: { openid: ['sub'], email: ['email'], groups: ['groups'] },
    // Tokens carry the claims themselves (as Keycloak's do), not only the userinfo endpoint.
    conformIdTokenClaims: false,
    findAccount: async (ctx, id) => ({
      accountId: id,
      claims: async () => ({
        sub: id,
        email: `${id}@onyx.internal`,
        groups: (accounts[id] && accounts[id].groups) || [],
      }),
    }),
    loadExistingGrant: async (ctx) => {
      // Consent is implied: the test signs in and gets its tokens without a consent page.
      const grant = new ctx.oidc.provider.Grant({
        clientId: ctx.oidc.client.clientId,
        accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope('openid email groups');
      grant.addOIDCClaims(['sub', 'email', 'groups']);
      await grant.save();
      return grant;
    },
  });
  provider.proxy = false;
  server.on('request', provider.callback());
  console.log(`issuer ${issuer}`);
});
