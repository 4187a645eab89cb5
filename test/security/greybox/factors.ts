/** One's own second factors (src/http/routes/factors.ts): a session with a fresh second factor. */
import { type Declarations, FRESH_SESSIONS } from '../greybox-declare.ts';

export const factors: Declarations = {
  'GET /v1/factors': { allow: FRESH_SESSIONS, own: () => ({ path: '/v1/factors' }) },
  'POST /v1/factors/totp': { allow: FRESH_SESSIONS, own: () => ({ path: '/v1/factors/totp', body: {} }) },
  // A factor the caller begins here, confirmed with its current code (a wrong code answers 401 too).
  'POST /v1/factors/totp/confirm': {
    allow: FRESH_SESSIONS,
    own: async (f, ctx) => {
      const begun = await ctx.call('POST', '/v1/factors/totp', {});
      if (begun.status !== 200)
        return { path: '/v1/factors/totp/confirm', body: { factorId: f.ghost.factor, code: '123456' } };
      const { factorId, secret } = JSON.parse(begun.text) as { factorId: string; secret: string };
      return { path: '/v1/factors/totp/confirm', body: { factorId, code: await ctx.codeFor(secret) } };
    },
  },
  'POST /v1/factors/webauthn/options': {
    allow: FRESH_SESSIONS,
    own: () => ({ path: '/v1/factors/webauthn/options' }),
  },
  'POST /v1/factors/webauthn': {
    allow: FRESH_SESSIONS,
    own: () => ({ path: '/v1/factors/webauthn', body: { response: {} } }),
  },
  'POST /v1/factors/recovery-codes': {
    allow: FRESH_SESSIONS,
    own: () => ({ path: '/v1/factors/recovery-codes' }),
  },
  'DELETE /v1/factors/:id': {
    allow: FRESH_SESSIONS,
    own: (f) => ({ path: `/v1/factors/${f.ghost.factor}` }),
  },
};
