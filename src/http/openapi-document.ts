/**
 * Builds the committed OpenAPI document: the application with every route module from
 * routes/index.ts (on stand-in dependencies — nothing runs), rendered deterministically.
 * scripts/openapi.ts writes it to openapi.json; test/http/openapi.test.ts compares the two.
 */
import { pino } from 'pino';
import { DEFAULT_BODY_LIMIT, DEFAULT_RATE_LIMIT, DEFAULT_TIMEOUTS } from '../config/server-config.ts';
import { TresorError } from '../errors.ts';
import { buildApp } from './app.ts';
import { renderOpenApi } from './openapi.ts';
import type { RouteModule } from './route.ts';
import { allRouteModules, specOnlyDependencies } from './routes/index.ts';

export async function generateOpenApiDocument(
  modules: readonly RouteModule[] = allRouteModules(specOnlyDependencies()),
): Promise<string> {
  const refuse = async (): Promise<never> => {
    throw new TresorError('TRESOR_ERR_UNAVAILABLE', 'not serving: generating the OpenAPI document');
  };
  const app = await buildApp({
    config: {
      bodyLimit: DEFAULT_BODY_LIMIT,
      rateLimit: DEFAULT_RATE_LIMIT,
      trustProxy: [],
      timeouts: DEFAULT_TIMEOUTS,
      logLevel: 'silent',
    },
    authenticate: refuse,
    audit: { record: refuse },
    readiness: [],
    routes: modules,
    logger: pino({ level: 'silent' }),
  });
  try {
    await app.ready();
    return renderOpenApi(app);
  } finally {
    await app.close();
  }
}
