/** Security alerts (src/http/routes/alerts.ts): the security officer; an alerts:read token reads. */
import { type Declarations, only, token } from '../greybox-declare.ts';

const READ = only('security-officer', token('alerts:read'));

export const alerts: Declarations = {
  'GET /v1/alerts': { allow: READ, own: () => ({ path: '/v1/alerts' }) },
  'GET /v1/alerts/:id': { allow: READ, own: (f) => ({ path: `/v1/alerts/${f.ghost.alert}` }) },
  'POST /v1/alerts/:id/acknowledge': {
    allow: only('security-officer'),
    own: (f) => ({ path: `/v1/alerts/${f.ghost.alert}/acknowledge`, body: { note: 'greybox' } }),
  },
  'POST /v1/alerts/:id/resolve': {
    allow: only('security-officer'),
    own: (f) => ({ path: `/v1/alerts/${f.ghost.alert}/resolve`, body: { note: 'greybox' } }),
  },
};
