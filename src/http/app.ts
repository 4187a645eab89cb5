/**
 * The Fastify application: response headers, the strict JSON body parser, the pipeline, the error
 * and not-found handlers, the OpenAPI generator, and every route — registered only through here,
 * so each passes the pipeline (a route added any other way is refused at start).
 *
 * `buildApp` makes the application without a listener: tests drive it with inject(), the OpenAPI
 * script reads its document. server.ts adds HTTPS, timeouts and shutdown around it.
 *
 * Logging: one line per request (method, route pattern, status, time, request id) and one per
 * failure. Never the URL's query string (it can carry searched field values), never bodies, never
 * credentials; the redact list is a second line of defence.
 */
import type { ServerOptions as HttpsServerOptions } from 'node:https';
import rateLimitPlugin from '@fastify/rate-limit';
import swagger from '@fastify/swagger';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyRequest,
  LogController,
} from 'fastify';
import { pino } from 'pino';
import type { ServerConfig } from '../config/server-config.ts';
import { TresorError } from '../errors.ts';
import type {
  AuditRecorder,
  Authenticator,
  GrantResolver,
  ReadinessCheck,
  RefusedGrantResolver,
  RequestObserver,
  SessionAuthenticator,
} from './deps.ts';
import { errorHandler, frameworkErrorHandler, notFoundHandler } from './error-handler.ts';
import { routeHandler } from './handler.ts';
import { isAcceptedJsonMediaType, parseJsonBody } from './json-body.ts';
import { requestIdFor } from './layers/request-id.ts';
import { validatorsFor } from './layers/validation.ts';
import { openApiOptions } from './openapi.ts';
import { installPipeline, type LayerName, rememberRoute } from './pipeline.ts';
import { PROBLEM_CONTENT_TYPE, toProblem } from './problem.ts';
import { isRouteDefinition, type RouteDefinition, type RouteModule } from './route.ts';
import { systemRoutes } from './routes/system.ts';
import { SECURITY_HEADERS, securityHeadersLayer } from './security-headers.ts';
import { awaitUnreadBody } from './unread-body.ts';

export interface HttpDeps {
  config: Pick<ServerConfig, 'bodyLimit' | 'rateLimit' | 'trustProxy' | 'timeouts' | 'logLevel'>;
  authenticate: Authenticator;
  /** Console sessions; without them the API takes bearer tokens only. */
  sessions?: SessionAuthenticator;
  /** The server's own origins (server.ts); a cookie-authenticated change from any other is refused. */
  ownOrigins?: () => readonly string[];
  grants?: GrantResolver;
  refusedGrants?: RefusedGrantResolver;
  audit: AuditRecorder;
  readiness: readonly ReadinessCheck[];
  routes: readonly RouteModule[];
  logger?: FastifyBaseLogger;
  /** The clock for audit events and second-factor freshness (tests pin it). */
  now?: () => Date;
  onLayer?: (layer: LayerName, request: FastifyRequest) => void;
  /** Request rate, latency and status for the metrics. */
  requests?: RequestObserver;
}

/** Never written to a log, whatever a log call is handed (pino redact paths). */
export const REDACTED_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
  'headers.cookie',
  'authorization',
  'token',
  'password',
  'body',
  'req.body',
];

export function createServerLogger(level: ServerConfig['logLevel']): FastifyBaseLogger {
  return pino(
    { level, base: { service: 'tresor' }, redact: { paths: REDACTED_PATHS, censor: '[redacted]' } },
    pino.destination({ fd: 2, sync: false }),
  );
}

export async function buildApp(deps: HttpDeps, https?: HttpsServerOptions): Promise<FastifyInstance> {
  const { config } = deps;
  const now = deps.now ?? (() => new Date());
  const app = Fastify({
    loggerInstance: deps.logger ?? createServerLogger(config.logLevel),
    ...(https ? { https } : {}),
    genReqId: requestIdFor,
    logController: new LogController({ requestIdLogLabel: 'requestId', disableRequestLogging: true }),
    frameworkErrors: frameworkErrorHandler,
    bodyLimit: config.bodyLimit,
    trustProxy: config.trustProxy.length > 0 ? config.trustProxy : false,
    exposeHeadRoutes: false,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    connectionTimeout: config.timeouts.idleMs,
    keepAliveTimeout: config.timeouts.keepAliveMs,
    requestTimeout: config.timeouts.requestMs,
    routerOptions: { maxParamLength: 256, ignoreTrailingSlash: false, ignoreDuplicateSlashes: false },
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    clientErrorHandler: answerClientError,
  });
  app.decorateRequest('tresor', null as unknown as FastifyRequest['tresor']);

  // Layer 0: the security headers, computed once (security-headers.ts).
  app.addHook('onRequest', securityHeadersLayer);
  await app.register(rateLimitPlugin, { global: false, cache: 20_000 });
  const routes: RouteDefinition[] = [];
  await app.register(
    swagger,
    openApiOptions(() => routes),
  );

  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body, done) => {
    try {
      if (!isAcceptedJsonMediaType(String(request.headers['content-type']))) {
        throw new TresorError(
          'TRESOR_ERR_UNSUPPORTED_MEDIA_TYPE',
          'request bodies must be application/json (UTF-8)',
        );
      }
      done(null, parseJsonBody(body as Buffer));
    } catch (err) {
      done(err as Error, undefined);
    }
  });
  // Validation is layer 6 of the pipeline (layers/validation.ts), with errors shaped like every
  // other problem; Fastify's own pass would be a second, differently configured validator.
  app.setValidatorCompiler(() => () => true);

  app.setErrorHandler(errorHandler({ audit: deps.audit, now }));
  app.setNotFoundHandler(notFoundHandler(app));
  installPipeline(app, {
    bodyLimit: config.bodyLimit,
    rateLimit: config.rateLimit,
    authenticate: deps.authenticate,
    ...(deps.sessions ? { sessions: deps.sessions } : {}),
    ...(deps.ownOrigins ? { ownOrigins: deps.ownOrigins } : {}),
    ...(deps.grants ? { grants: deps.grants } : {}),
    ...(deps.refusedGrants ? { refusedGrants: deps.refusedGrants } : {}),
    audit: deps.audit,
    now,
    onLayer: deps.onLayer,
  });

  app.addHook('onRoute', (options) => {
    if (!isRouteDefinition(options.config?.tresor)) {
      throw new Error(`route ${options.method} ${options.url} was not registered through defineRoute`);
    }
  });
  // Graceful shutdown: answers finished after close() began end their connection, so a keep-alive
  // client does not hold the server open until its idle timeout.
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  app.addHook(
    'onSend',
    awaitUnreadBody({ maxBytes: config.bodyLimit, maxWaitMs: config.timeouts.requestMs }),
  );
  app.addHook('onSend', async function closeConnectionWhenShuttingDown(_request, reply) {
    if (closing) reply.header('connection', 'close');
  });
  app.addHook('onResponse', async function logRequest(request, reply) {
    request.log.info(
      {
        method: request.method,
        route: request.routeOptions.url ?? null,
        status: reply.statusCode,
        ms: Math.round(reply.elapsedTime),
      },
      'request',
    );
    // The route template (undefined for the not-found handler), never the URL.
    const matched = isRouteDefinition(request.routeOptions.config?.tresor);
    deps.requests?.observe({
      method: request.method,
      route: matched ? request.routeOptions.url : undefined,
      status: reply.statusCode,
      seconds: reply.elapsedTime / 1000,
    });
  });

  const modules = [systemRoutes({ readiness: deps.readiness, openapi: () => app.swagger() }), ...deps.routes];
  for (const module of modules) {
    for (const route of module.routes) {
      if (!isRouteDefinition(route))
        throw new Error(`module ${module.name}: a route not made by defineRoute`);
      validatorsFor(route); // compile now: a schema TypeBox cannot compile fails the start, not a request
      app.route({
        method: route.method,
        url: route.url,
        config: { tresor: route },
        schema: {
          summary: route.summary,
          ...(route.description ? { description: route.description } : {}),
          ...(route.operationId ? { operationId: route.operationId } : {}),
          tags: [...route.tags],
          ...route.schema,
        },
        handler: routeHandler(route, now),
      });
      routes.push(route);
      rememberRoute(app, route);
    }
  }
  return app;
}

/**
 * Errors Node's HTTP parser meets before any route runs (headers too large, malformed request
 * line): answered as problem+json with the security headers, never Fastify's plain JSON.
 */
function answerClientError(err: NodeJS.ErrnoException, socket: import('node:net').Socket): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const problem = toProblem(
    err.code === 'HPE_HEADER_OVERFLOW'
      ? new TresorError('TRESOR_ERR_HEADERS_TOO_LARGE', 'the request line or headers are too large')
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? new TresorError('TRESOR_ERR_REQUEST_TIMEOUT', 'the request did not arrive in time')
        : new TresorError('TRESOR_ERR_BAD_REQUEST', 'the request could not be parsed'),
  );
  const body = JSON.stringify(problem);
  // Below fastify (no request object yet), so the head is written by hand — with the same
  // security headers as every other answer.
  const headers = SECURITY_HEADERS.map(([name, value]) => `${name}: ${value}\r\n`).join('');
  // Then destroyed, not only ended: an ended socket stays open until the client closes its side,
  // and a client that never does would hold it (and a file descriptor) for good.
  socket.write(
    `HTTP/1.1 ${problem.status} ${problem.title}\r\n` +
      `Content-Type: ${PROBLEM_CONTENT_TYPE}\r\n` +
      'Cache-Control: no-store\r\n' +
      headers +
      'Connection: close\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
  socket.destroySoon();
}
