/**
 * b. keyd round trips per second over its two channels, against an echo over the same channel.
 *
 * For each transport (Unix socket; mTLS with TLS 1.3 on loopback), at concurrency 1 and N
 * (pipelined across the client's pool of connections):
 *   baseline  a 256-byte frame echoed by echo-child.ts (no parsing, no work)
 *   status    the lightest keyd operation: protocol, checks and one ops-log entry
 *   unwrapDataKey / generateDataKey  what the API server asks keyd for
 * The same operations on createKeyService in this process (no transport) separate keyd's own work
 * from the channel's; and a raw fdatasync on keyd's disk bounds what concurrency 1 can reach,
 * since every answer waits for its ops-log entry to be durable.
 */
import { closeSync, fdatasyncSync, openSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { wipe } from '../src/crypto/index.ts';
import { createKeydClient, type KeydConnectTarget } from '../src/keyd/client.ts';
import { KeydError } from '../src/keyd/errors.ts';
import type { DataKeyPurpose, KeyService } from '../src/keyd/operations.ts';
import { openSqlite } from '../src/store/sqlite/open.ts';
import { connectEcho } from './echo-client.ts';
import { measureAsync, measureSync } from './measure.ts';
import { baselineFigure, compared, type Figure, type FigureGroup, type Section } from './report.ts';

export interface Transport {
  label: string;
  keyd: KeydConnectTarget;
  echo: KeydConnectTarget;
}

export interface RoundTripOptions {
  transports: Transport[];
  /** A key service in this process (its own folder), called without any transport. */
  inProcess: KeyService;
  seconds: number;
  concurrencies: number[];
  poolSize: number;
  /** A folder on keyd's disk, for the fsync baseline. */
  diskDir: string;
}

/** About the size of an unwrapDataKey request frame. */
const ECHO_FRAME_BYTES = 256;
/** One tenant per in-flight request at the highest concurrency: keyd serialises each tenant's operations. */
const TENANTS = 64;
const PURPOSE: DataKeyPurpose = 'data';

interface Wrapped {
  tenant: string;
  keyId: string;
  wrapped: Buffer;
}

/** Creates the bench tenants (if needed) and one data key each; returns the wrapped keys. */
async function prepare(keys: KeyService): Promise<Wrapped[]> {
  const tenants = Array.from({ length: TENANTS }, (_, i) => `rt-${String(i).padStart(2, '0')}`);
  return Promise.all(
    tenants.map(async (tenant) => {
      await keys.call('createTenantKey', { tenant }).catch((error: unknown) => {
        if (!(error instanceof KeydError && error.code === 'TRESOR_ERR_TENANT_KEY_EXISTS')) throw error;
      });
      const { keyId, key, wrapped } = await keys.call('generateDataKey', { tenant, purpose: PURPOSE });
      wipe(key);
      return { tenant, keyId, wrapped };
    }),
  );
}

/** The keyd operations measured, each a closure cycling over the bench tenants. */
function operations(keys: KeyService, wrappedKeys: Wrapped[]) {
  let next = 0;
  const pick = (): Wrapped => wrappedKeys[next++ % wrappedKeys.length] as Wrapped;
  return {
    status: () => keys.call('status', {}),
    unwrap: async () => {
      const { tenant, keyId, wrapped } = pick();
      const { key } = await keys.call('unwrapDataKey', { tenant, purpose: PURPOSE, keyId, wrapped });
      wipe(key);
    },
    generate: async () => {
      const { key } = await keys.call('generateDataKey', { tenant: pick().tenant, purpose: PURPOSE });
      wipe(key);
    },
  };
}

async function benchTransport(transport: Transport, options: RoundTripOptions): Promise<FigureGroup[]> {
  const client = createKeydClient({
    connect: transport.keyd,
    clientName: 'tresor-bench',
    poolSize: options.poolSize,
    retries: 0,
  });
  const echo = await connectEcho(transport.echo, options.poolSize, ECHO_FRAME_BYTES);
  try {
    const ops = operations(client, await prepare(client));
    const groups: FigureGroup[] = [];
    for (const c of options.concurrencies) {
      const baseline = baselineFigure(
        `${ECHO_FRAME_BYTES}-byte echo`,
        await measureAsync(() => echo.request(), c, options.seconds),
      );
      const figures: Figure[] = [baseline];
      for (const [name, op] of [
        ['status', ops.status],
        ['unwrapDataKey', ops.unwrap],
        ['generateDataKey', ops.generate],
      ] as const) {
        figures.push(compared(name, await measureAsync(op, c, options.seconds), baseline));
      }
      groups.push({ title: `${transport.label}, concurrency ${c}`, figures });
    }
    return groups;
  } finally {
    echo.close();
    await client.close();
  }
}

async function benchInProcessService(options: RoundTripOptions): Promise<FigureGroup[]> {
  const ops = operations(options.inProcess, await prepare(options.inProcess));
  const groups: FigureGroup[] = [];
  for (const c of options.concurrencies) {
    const baseline = baselineFigure('status', await measureAsync(ops.status, c, options.seconds));
    groups.push({
      title: `in process, no transport (createKeyService), concurrency ${c}`,
      figures: [
        baseline,
        compared('unwrapDataKey', await measureAsync(ops.unwrap, c, options.seconds), baseline),
        compared('generateDataKey', await measureAsync(ops.generate, c, options.seconds), baseline),
      ],
    });
  }
  return groups;
}

/** 4 KiB written and fdatasync'd in place, as SQLite's WAL commit does with synchronous=FULL. */
function measureFsync(dir: string, seconds: number): number {
  const path = join(dir, 'fsync-probe');
  const fd = openSync(path, 'w', 0o600);
  const page = Buffer.alloc(4096, 0x5a);
  try {
    return measureSync(() => {
      writeSync(fd, page, 0, page.length, 0);
      fdatasyncSync(fd);
    }, seconds).opsPerSecond;
  } finally {
    closeSync(fd);
    rmSync(path, { force: true });
  }
}

/** One ~200-byte row per transaction, with the pragmas every Tresor store uses (WAL, synchronous=FULL). */
function measureSqliteCommit(dir: string, seconds: number): number {
  const path = join(dir, 'commit-probe.sqlite');
  const db = openSqlite(path);
  try {
    db.exec('CREATE TABLE probe (seq INTEGER PRIMARY KEY, entry TEXT NOT NULL) STRICT');
    const insert = db.prepare('INSERT INTO probe (entry) VALUES (?)');
    const entry = 'x'.repeat(200);
    return measureSync(() => insert.run(entry), seconds).opsPerSecond;
  } finally {
    db.close();
    for (const suffix of ['', '-wal', '-shm']) rmSync(`${path}${suffix}`, { force: true });
  }
}

export async function benchRoundTrips(options: RoundTripOptions): Promise<Section> {
  const groups: FigureGroup[] = [];
  for (const transport of options.transports) groups.push(...(await benchTransport(transport, options)));
  // The disk baselines run just before the in-process service, whose concurrency-1 rate they bound.
  const fsyncPerSecond = measureFsync(options.diskDir, options.seconds);
  const commitsPerSecond = measureSqliteCommit(options.diskDir, options.seconds);
  groups.push(...(await benchInProcessService(options)));
  return {
    id: 'round-trips',
    title: 'b. keyd round trips',
    groups,
    facts: [
      { name: 'disk baseline: 4 KiB overwrite + fdatasync, keyd’s disk', value: fsyncPerSecond, unit: '/s' },
      { name: '  = one fdatasync', value: 1e6 / fsyncPerSecond, unit: 'µs' },
      {
        name: 'disk baseline: 1-row SQLite commit (WAL, synchronous=FULL)',
        value: commitsPerSecond,
        unit: '/s',
      },
      { name: '  = one commit', value: 1e6 / commitsPerSecond, unit: 'µs' },
    ],
    notes: [
      'keyd runs as its own process (bench/keyd-child.ts → runKeyd, dev-file root key) and shares the ' +
        `2 cores with this client. The client pools ${options.poolSize} pipelined connections; at ` +
        `concurrency ${Math.max(...options.concurrencies)} requests spread over ${TENANTS} tenants, ` +
        'because keyd serialises the operations of one tenant.',
      'Every keyd operation, status included, appends a hash-chained ops-log entry and answers only ' +
        'once that entry is durable. Entries are group-committed: all those queued in one event-loop turn ' +
        'go into one SQLite transaction (WAL, synchronous=FULL), i.e. one fdatasync. At concurrency 1 every ' +
        'round trip waits for its own commit, so it cannot beat the SQLite commit rate above; at higher ' +
        'concurrency one commit covers many answers.',
    ],
  };
}
