/** Operator tokens (src/http/routes/operator-tokens.ts): operator admins' sessions only; a fresh factor to mint. */
import { type Declarations, OPERATOR, only } from '../greybox-declare.ts';

export const operatorTokens: Declarations = {
  'POST /v1/operator-tokens': {
    allow: only('operator'),
    own: (f) => ({
      path: '/v1/operator-tokens',
      body: { scope: 'jobs:read', name: `greybox ${f.unique()}` },
    }),
  },
  'GET /v1/operator-tokens': { allow: OPERATOR, own: () => ({ path: '/v1/operator-tokens' }) },
  'POST /v1/operator-tokens/:id/rotate': {
    allow: only('operator'),
    own: (f) => ({ path: `/v1/operator-tokens/${f.ghost.token}/rotate` }),
  },
  'DELETE /v1/operator-tokens/:id': {
    allow: OPERATOR,
    own: (f) => ({ path: `/v1/operator-tokens/${f.ghost.token}` }),
  },
};
