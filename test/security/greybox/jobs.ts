/** The background jobs' state (src/http/routes/jobs.ts): operators, a jobs:read token. */
import { type Declarations, OPERATOR, only, token } from '../greybox-declare.ts';

export const jobs: Declarations = {
  'GET /v1/system/jobs': {
    allow: only(OPERATOR, token('jobs:read')),
    own: () => ({ path: '/v1/system/jobs' }),
  },
};
