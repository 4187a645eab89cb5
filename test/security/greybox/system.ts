/** The server's own routes (src/http/routes/system.ts): probes, the OpenAPI document, its reference page. */
import type { Declarations } from '../greybox-declare.ts';

export const system: Declarations = Object.fromEntries(
  ['/healthz', '/readyz', '/v1/openapi.json', '/docs'].map((path) => [
    `GET ${path}`,
    { allow: 'everyone', own: () => ({ path }) },
  ]),
);
