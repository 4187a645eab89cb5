/** Console sessions (src/http/routes/sessions.ts): one's own, and an admin ending a person's. */
import { type Declarations, only, SESSIONS } from '../greybox-declare.ts';

export const sessions: Declarations = {
  'GET /v1/sessions': { allow: SESSIONS, own: () => ({ path: '/v1/sessions' }) },
  'DELETE /v1/sessions/:id': { allow: SESSIONS, own: (f) => ({ path: `/v1/sessions/${f.ghost.session}` }) },
  'POST /v1/people/:id/sessions/revoke-all': {
    allow: only('operator', 'tenant-admin'),
    own: (f) => ({ path: `/v1/people/${f.a.member}/sessions/revoke-all`, body: {} }),
    other: (f) => ({ path: `/v1/people/${f.b.member}/sessions/revoke-all`, body: {} }),
  },
};
