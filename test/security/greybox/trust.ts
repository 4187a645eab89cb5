/** The public trust page (src/http/routes/trust.ts). */
import type { Declarations } from '../greybox-declare.ts';

export const trust: Declarations = {
  'GET /trust.json': { allow: 'everyone', own: () => ({ path: '/trust.json' }) },
  'GET /trust': { allow: 'everyone', own: () => ({ path: '/trust' }) },
};
