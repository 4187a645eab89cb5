/** Restoring one tenant (src/http/routes/tenant-restores.ts): operator admins with a fresh factor; a backups:read token reads. */
import { type Declarations, OPERATOR, only, token } from '../greybox-declare.ts';

export const tenantRestores: Declarations = {
  'POST /v1/tenants/:id/restore': {
    allow: only('operator'),
    own: (f) => ({ path: `/v1/tenants/${f.closable}/restore`, body: { backupId: f.ghost.backup } }),
  },
  'GET /v1/tenants/:id/restores/:restoreId': {
    allow: only(OPERATOR, token('backups:read')),
    own: (f) => ({ path: `/v1/tenants/${f.a.tenant}/restores/${f.ghost.restore}` }),
  },
};
