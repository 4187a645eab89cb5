/** The caller's own console session (src/http/routes/current-session.ts): any session. */
import { type Declarations, SESSIONS } from '../greybox-declare.ts';

export const currentSession: Declarations = {
  'GET /v1/auth/session': { allow: SESSIONS, own: () => ({ path: '/v1/auth/session' }) },
  // Ends the session: run last.
  'POST /v1/auth/logout': { allow: SESSIONS, last: true, own: () => ({ path: '/v1/auth/logout' }) },
  // A valid code: the session is replaced (a new id), so run last.
  'POST /v1/auth/reauthenticate': {
    allow: SESSIONS,
    last: true,
    own: async (_f, ctx) => ({ path: '/v1/auth/reauthenticate', body: { totp: await ctx.totp() } }),
  },
  'POST /v1/auth/reauthenticate/webauthn/options': {
    allow: SESSIONS,
    own: () => ({ path: '/v1/auth/reauthenticate/webauthn/options' }),
  },
  'POST /v1/auth/reauthenticate/webauthn': {
    allow: SESSIONS,
    last: true,
    own: () => ({ path: '/v1/auth/reauthenticate/webauthn', body: { response: {} } }),
  },
};
