/**
 * The baseline of the HTTPS bench (http.ts), as its own process: a plain server on the same stack
 * as Tresor's API with the same durability, but no encryption and no audit. What is the same:
 *
 * - Fastify 5 over HTTPS with the same certificate and TLS policy (src/http/tls.ts), the same
 *   keep-alive and request timeouts, and a pino log line per request to stderr as Tresor writes;
 * - the same store: openSqliteStore (src/store/sqlite/store.ts) — WAL, synchronous=FULL, group
 *   commit, statement cache, a separate reader connection — and Kysely for every query; or, with
 *   `databaseUrl`, openPgStore (src/store/pg/store.ts) on PostgreSQL — the same pool, group commit
 *   and synchronous_commit as Tresor's PostgreSQL backend;
 * - the same URLs and JSON bodies: POST /v1/collections/:name/records answers 201 {id, version,
 *   data}, GET …/records/:id answers {id, version, data}, POST …/records/search with
 *   {where: {email}} answers {records, nextCursor}; GET /healthz (no token) answers {status: 'live'}.
 *
 * What it leaves out: field encryption and blind indexes (data is a plaintext JSON column, email a
 * plain indexed column), audit events, API-key authentication (one constant bearer token, compared
 * in constant time), rate limits, helmet headers, the strict JSON parser (Fastify's own parses the
 * body; Ajv checks it is an object with a string email) and the collections table.
 *
 * argv: JSON { dataDir, certFile, keyFile }. Prints one JSON line on stdout once listening:
 * { url, token }. Stops on SIGTERM/SIGINT and when its stdin ends, like the other bench children.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { join } from 'node:path';
import Fastify from 'fastify';
import { type Kysely, type Migration, sql } from 'kysely';
import { pino } from 'pino';
import { DEFAULT_TIMEOUTS } from '../src/config/server-config.ts';
import { secureContextOptions } from '../src/http/tls.ts';
import { openPgStore } from '../src/store/pg/store.ts';
import { openSqliteStore } from '../src/store/sqlite/store.ts';
import type { Store } from '../src/store/types.ts';

export interface BaselineChildArgs {
  dataDir: string;
  /** A PostgreSQL database (bench/pg-database.ts): the store is openPgStore there, not SQLite. */
  databaseUrl?: string;
  certFile: string;
  keyFile: string;
  logLevel: string;
}

export interface BaselineChildAddress {
  url: string;
  token: string;
}

interface BaselineDB {
  records: { id: string; collection: string; email: string; data: string };
}

const recordsMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('records')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('collection', 'text', (c) => c.notNull())
      .addColumn('email', 'text', (c) => c.notNull())
      .addColumn('data', 'text', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('records_by_email').on('records').columns(['collection', 'email']).execute();
  },
};

const NAME = '^[a-z][a-z0-9_]{0,62}$';
const PAGE = 50;

const args = JSON.parse(process.argv[2] ?? '{}') as BaselineChildArgs;
const token = randomBytes(32).toString('base64url');
const expected = Buffer.from(`Bearer ${token}`);
const migrations = { '0001-records': recordsMigration };
const store: Store<BaselineDB> =
  args.databaseUrl === undefined
    ? await openSqliteStore<BaselineDB>(join(args.dataDir, 'baseline.sqlite'), migrations)
    : await openPgStore<BaselineDB>({ url: args.databaseUrl, schema: 'baseline', migrations });

const app = Fastify({
  loggerInstance: pino({ level: args.logLevel }, pino.destination({ fd: 2, sync: false })),
  disableRequestLogging: true,
  https: secureContextOptions({ certFile: args.certFile, keyFile: args.keyFile }),
  keepAliveTimeout: DEFAULT_TIMEOUTS.keepAliveMs,
  requestTimeout: DEFAULT_TIMEOUTS.requestMs,
  connectionTimeout: DEFAULT_TIMEOUTS.idleMs,
  bodyLimit: 1024 * 1024,
});

app.addHook('onRequest', async (request, reply) => {
  if (request.url === '/healthz') return;
  const presented = Buffer.from(request.headers.authorization ?? '');
  if (presented.length !== expected.length || !timingSafeEqual(presented, expected)) {
    return reply.code(401).send({ title: 'unauthenticated' });
  }
});
app.addHook('onResponse', async (request, reply) => {
  request.log.info(
    {
      method: request.method,
      route: request.routeOptions.url ?? null,
      status: reply.statusCode,
      ms: Math.round(reply.elapsedTime),
    },
    'request',
  );
});

type RecordData = Record<string, unknown> & { email: string };

app.post<{ Params: { name: string }; Body: RecordData }>(
  '/v1/collections/:name/records',
  {
    schema: {
      params: { type: 'object', properties: { name: { type: 'string', pattern: NAME } } },
      body: {
        type: 'object',
        required: ['email'],
        maxProperties: 256,
        properties: { email: { type: 'string', maxLength: 4096 } },
      },
    },
  },
  async (request, reply) => {
    const id = `rec_${randomBytes(16).toString('hex')}`;
    const data = request.body;
    const collection = request.params.name;
    await store.write((trx) =>
      trx
        .insertInto('records')
        .values({ id, collection, email: data.email, data: JSON.stringify(data) })
        .execute(),
    );
    reply.code(201).header('etag', '"1"').header('location', `/v1/collections/${collection}/records/${id}`);
    return { id, version: 1, data };
  },
);

app.get<{ Params: { name: string; id: string } }>(
  '/v1/collections/:name/records/:id',
  {
    schema: {
      params: {
        type: 'object',
        properties: {
          name: { type: 'string', pattern: NAME },
          id: { type: 'string', pattern: '^rec_[0-9a-f]{32}$' },
        },
      },
    },
  },
  async (request, reply) => {
    const row = await store.db
      .selectFrom('records')
      .select('data')
      .where('id', '=', request.params.id)
      .where('collection', '=', request.params.name)
      .executeTakeFirst();
    if (!row) return reply.code(404).send({ title: 'no such record' });
    reply.header('etag', '"1"');
    return { id: request.params.id, version: 1, data: JSON.parse(row.data) as unknown };
  },
);

app.post<{ Params: { name: string }; Body: { where: { email?: string } } }>(
  '/v1/collections/:name/records/search',
  {
    schema: {
      params: { type: 'object', properties: { name: { type: 'string', pattern: NAME } } },
      body: {
        type: 'object',
        required: ['where'],
        properties: {
          where: { type: 'object', properties: { email: { type: 'string', maxLength: 4096 } } },
        },
      },
    },
  },
  async (request) => {
    const email = request.body.where.email;
    let query = store.db
      .selectFrom('records')
      .select(['id', 'data'])
      .where('collection', '=', request.params.name)
      // Insertion order on SQLite; PostgreSQL has no rowid, and the id orders as well.
      .orderBy(args.databaseUrl === undefined ? sql`rowid` : sql`id`)
      .limit(PAGE);
    if (typeof email === 'string') query = query.where('email', '=', email);
    const rows = await query.execute();
    return {
      records: rows.map((r) => ({ id: r.id, version: 1, data: JSON.parse(r.data) as unknown })),
      nextCursor: null,
    };
  },
);

app.get('/healthz', async () => ({ status: 'live' }));

await app.listen({ host: '127.0.0.1', port: 0 });
const { port } = app.server.address() as { port: number };
const address: BaselineChildAddress = { url: `https://127.0.0.1:${port}`, token };
process.stdout.write(`${JSON.stringify(address)}\n`);

let stopping = false;
function stop(): void {
  if (stopping) return;
  stopping = true;
  void app
    .close()
    .then(() => store.close())
    .finally(() => process.exit(0));
}
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.resume();
