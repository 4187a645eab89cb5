/** The caller's own console session (src/http/routes/current-session.ts): any session. */
import { type Declarations, FRESH_SESSIONS, SESSIONS } from '../greybox-declare.ts';

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
  // A fresh second factor; the body leaves the new password out, so an admitted caller gets the
  // validation's 400 and no password changes (a change would end every session of the person).
  'POST /v1/auth/password': {
    allow: FRESH_SESSIONS,
    own: () => ({ path: '/v1/auth/password', body: { currentPassword: 'not-checked' } }),
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
