/** The public keys that verify Tresor's signatures (src/http/routes/keys.ts). */
import type { Declarations } from '../greybox-declare.ts';

export const keys: Declarations = {
  'GET /v1/keys': { allow: 'everyone', own: () => ({ path: '/v1/keys' }) },
};
