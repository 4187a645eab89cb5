/** Backups (src/http/routes/backups.ts): operators; tokens of backups:run and backups:read. */
import { type Declarations, OPERATOR, only, token } from '../greybox-declare.ts';

const RUN = only(OPERATOR, token('backups:run'));
const READ = only(OPERATOR, token('backups:read'));

export const backups: Declarations = {
  'POST /v1/backups': { allow: RUN, own: () => ({ path: '/v1/backups' }) },
  'GET /v1/backups': { allow: READ, own: () => ({ path: '/v1/backups' }) },
  'GET /v1/backups/:id': { allow: READ, own: (f) => ({ path: `/v1/backups/${f.ghost.backup}` }) },
  'POST /v1/backups/:id/verify': {
    allow: RUN,
    own: (f) => ({ path: `/v1/backups/${f.ghost.backup}/verify` }),
  },
};
