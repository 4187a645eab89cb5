/** Measured availability (src/http/routes/availability.ts): operators, a jobs:read token. */
import { type Declarations, OPERATOR, only, token } from '../greybox-declare.ts';

export const availability: Declarations = {
  'GET /v1/system/availability': {
    allow: only(OPERATOR, token('jobs:read')),
    own: () => ({ path: '/v1/system/availability' }),
  },
};
