/** Prometheus metrics on the API port (src/http/routes/metrics.ts): operators, a metrics:read token. */
import { type Declarations, OPERATOR, only, token } from '../greybox-declare.ts';

export const metrics: Declarations = {
  'GET /metrics': { allow: only(OPERATOR, token('metrics:read')), own: () => ({ path: '/metrics' }) },
};
