/** Console sessions (src/http/routes/sessions.ts): one's own, and an admin ending a person's. */
import { type Declarations, only, SESSIONS } from '../greybox-declare.ts';

export const sessions: Declarations = {
  'GET /v1/sessions': { allow: SESSIONS, own: () => ({ path: '/v1/sessions' }) },
  // One's own session (another's answers 403, a session that does not exist too): ends it, so last.
  'DELETE /v1/sessions/:id': {
    allow: SESSIONS,
    last: true,
    own: (_f, ctx) => ({ path: `/v1/sessions/${ctx.sessionId}` }),
  },
  // Ends the caller's other sessions (those of the same person): run last.
  'POST /v1/sessions/revoke-others': {
    allow: SESSIONS,
    last: true,
    own: () => ({ path: '/v1/sessions/revoke-others' }),
  },
  'POST /v1/people/:id/sessions/revoke-all': {
    allow: only('operator', 'tenant-admin'),
    own: (f) => ({ path: `/v1/people/${f.a.member}/sessions/revoke-all` }),
    other: (f) => ({ path: `/v1/people/${f.b.member}/sessions/revoke-all` }),
  },
};
