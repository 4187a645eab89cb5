/**
 * What `tresor dev` does (dev.ts declares the command and loads this module only when it runs, so
 * `tresor --help` does not load the server and its packages).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureDevTls } from '../config/dev-tls.ts';
import { resolveServerConfig, type ServerConfig } from '../config/server-config.ts';
import { writeFileAtomic } from '../keyd/root/atomic-file.ts';
import { devFileInitialised, initDevFile } from '../keyd/root/dev-file.ts';
import { startTresorServer, type TresorServer } from '../server/tresor-server.ts';
import { info, out, warn } from './io.ts';
import { handleServerSignals } from './server-impl.ts';
import { deadlineFromEnv, waitForKeyd } from './wait-for-keyd.ts';

const BIN = fileURLToPath(new URL('../../bin/tresor.js', import.meta.url));

export interface DevStack {
  dataDir: string;
  keydDir: string;
  keydSocket: string;
  stop(): Promise<void>;
}

function waitForExit(child: ChildProcess): Promise<void> {
  return new Promise((res) => {
    if (child.exitCode !== null || child.signalCode !== null) res();
    else child.once('exit', () => res());
  });
}

/** How long `tresor dev` waits for its keyd child to answer (env TRESOR_DEV_KEYD_START_MS). */
const KEYD_START_MS = 60_000;

/** Starts keyd as a child process and waits until it answers on its socket; stops it if it never does. */
export async function startDevStack(dataDir: string): Promise<DevStack> {
  const keydDir = join(dataDir, 'keyd');
  mkdirSync(keydDir, { recursive: true, mode: 0o700 });
  if (!devFileInitialised(keydDir)) initDevFile(keydDir);
  const keydSocket = join(keydDir, 'keyd.sock');
  const deadlineMs = deadlineFromEnv('TRESOR_DEV_KEYD_START_MS', KEYD_START_MS);
  const keyd = spawn(
    process.execPath,
    [BIN, 'keyd', 'serve', '--provider', 'dev-file', '--dir', keydDir, '--insecure-dev-key-file'],
    {
      stdio: ['ignore', 'inherit', 'inherit'],
      env: { ...process.env, TRESOR_KEYD_SOCKET: keydSocket },
    },
  );
  const exited = waitForExit(keyd);
  const stop = async () => {
    if (keyd.exitCode === null && keyd.signalCode === null) keyd.kill('SIGTERM');
    await exited;
  };
  try {
    await waitForKeyd({
      connect: { kind: 'unix', path: keydSocket },
      clientName: 'tresor-dev',
      deadlineMs,
      until: 'ok',
      exited,
    });
  } catch (err) {
    await stop();
    throw err;
  }
  return { dataDir, keydDir, keydSocket, stop };
}

export interface DevCredentials {
  url: string;
  caFile: string;
  /**
   * The console operator admin (a person): enrols once with `enrolmentToken` (POST /v1/enrolment/…,
   * or the sign-in page's enrolment link), then signs in with password and second factor.
   */
  admin: { email: string; personId: string; enrolmentToken: string };
  /**
   * A short-lived operator token of scope tenants:create owned by that person, for the README's
   * curl; a new one is minted at a start that finds it expired. Never all-powerful: other
   * operator work needs the console admin's session (and a fresh second factor where it changes).
   */
  operatorToken: { id: string; token: string; scope: 'tenants:create'; expiresAt: string };
  demoTenant: { id: string; apiKey: string };
}

const DEV_ADMIN_EMAIL = 'admin@tresor.local';
/** The dev token's life: a working day, so a forgotten one does not linger (12 h). */
export const DEV_TOKEN_LIFETIME_MS = 12 * 3_600_000;
const DEV_JOB = 'tresor-dev';

function mintDevToken(server: TresorServer, personId: string): Promise<DevCredentials['operatorToken']> {
  return server.operatorTokens
    .issue(DEV_JOB, {
      owner: personId,
      scope: 'tenants:create',
      name: 'tresor dev (README curl)',
      lifetimeMs: DEV_TOKEN_LIFETIME_MS,
    })
    .then((t) => ({ id: t.id, token: t.token, scope: 'tenants:create', expiresAt: t.expiresAt }));
}

/**
 * First start: creates the console operator admin (a person, enrolled later with the one-time
 * token) and a demo tenant (as a system action), mints a short-lived tenants:create token owned by
 * that person, and writes their secrets to <data dir>/dev-credentials.json (0600) — the only place
 * they are kept. Later starts reuse it, minting a new token when the saved one has expired.
 */
async function devCredentials(
  server: TresorServer,
  dataDir: string,
  caFile: string,
): Promise<DevCredentials> {
  const path = join(dataDir, 'dev-credentials.json');
  if (existsSync(path)) {
    const saved = JSON.parse(readFileSync(path, 'utf8')) as Partial<DevCredentials>;
    if (!saved.admin?.personId || !saved.demoTenant) {
      throw new Error(
        `${path} is from an older Tresor (no operator admin person): remove the data folder to start afresh`,
      );
    }
    const expired =
      !saved.operatorToken || !(Date.parse(saved.operatorToken.expiresAt) > Date.now() + 60_000);
    const operatorToken = expired
      ? await mintDevToken(server, saved.admin.personId)
      : (saved.operatorToken as DevCredentials['operatorToken']);
    const updated: DevCredentials = {
      url: server.url,
      caFile,
      admin: saved.admin,
      operatorToken,
      demoTenant: saved.demoTenant,
    };
    writeFileAtomic(path, `${JSON.stringify(updated, null, 2)}\n`, 0o600);
    return updated;
  }
  // The console operator-admin account: it logs in only after enrolling a password and a second
  // factor with this one-time token.
  const consoleAdmin = await server.people.createPerson(
    { kind: 'system', job: 'bootstrap' },
    { side: 'operator', role: 'operator-admin', email: DEV_ADMIN_EMAIL },
  );
  const demo = await server.tenants.createTenant(
    { name: 'Demo tenant' },
    {
      at: new Date().toISOString(),
      actor: { kind: 'system', id: DEV_JOB },
      tenant: null,
      action: 'tenant.create',
      outcome: 'success',
    },
  );
  const credentials: DevCredentials = {
    url: server.url,
    caFile,
    admin: {
      email: consoleAdmin.person.email,
      personId: consoleAdmin.person.id,
      enrolmentToken: consoleAdmin.enrolmentToken,
    },
    operatorToken: await mintDevToken(server, consoleAdmin.person.id),
    demoTenant: { id: demo.id, apiKey: demo.apiKey },
  };
  writeFileAtomic(path, `${JSON.stringify(credentials, null, 2)}\n`, 0o600);
  return credentials;
}

/**
 * Where a browser opens the console: its first WebAuthn origin, whose host is the RP ID (an
 * https://127.0.0.1 page could not use the passkeys of RP ID `localhost`). With port 0 the
 * configured origin names port 0, so the port the server got is put in.
 */
export function consoleOrigin(config: ServerConfig, serverUrl: string): string {
  const configured = config.console.origins[0] ?? `https://${config.console.rpId}`;
  if (config.port !== 0) return configured;
  const url = new URL(configured);
  url.port = new URL(serverUrl).port;
  return url.origin;
}

function banner(c: DevCredentials, stack: DevStack, consoleUrl: string): string {
  return [
    '',
    `  Tresor is running at ${c.url}`,
    `  CA to trust:       ${c.caFile}`,
    `  keyd:              ${stack.keydSocket} (separate process, Unix socket 0600)`,
    `  console sign-in:   ${consoleUrl}/signin`,
    `  operator admin:    ${c.admin.email}: enrol once at ${consoleUrl}/signin#enrol=${c.admin.enrolmentToken}`,
    `                     (a browser that trusts the CA above; the token stays in the URL fragment,`,
    '                     which is never sent to the server); closing tenants, managing people and',
    '                     operator tokens need this person signed in with a fresh second factor',
    `  operator token:    ${c.operatorToken.token}`,
    `                     scope ${c.operatorToken.scope} only (POST /v1/tenants), owned by ${c.admin.email},`,
    `                     expires ${c.operatorToken.expiresAt} (a new one at the next start after that)`,
    `  demo tenant:       ${c.demoTenant.id}`,
    `  demo API key:      ${c.demoTenant.apiKey}`,
    `  (all of it also in ${join(stack.dataDir, 'dev-credentials.json')}, mode 0600)`,
    '',
    '  Try:',
    `    curl --cacert ${c.caFile} -X PUT ${c.url}/v1/collections/people \\`,
    `      -H "Authorization: Bearer ${c.demoTenant.apiKey}" -H 'content-type: application/json' \\`,
    `      -d '{"fields":{"email":{"type":"string","classification":"personal","searchable":true}}}'`,
    `    curl --cacert ${c.caFile} -X POST ${c.url}/v1/collections/people/records \\`,
    `      -H "Authorization: Bearer ${c.demoTenant.apiKey}" -H 'content-type: application/json' -d '{"email":"ada@example.com"}'`,
    `    curl --cacert ${c.caFile} -X POST ${c.url}/v1/tenants \\`,
    `      -H "Authorization: Bearer ${c.operatorToken.token}" -H 'content-type: application/json' -d '{"name":"Acme Ltd"}'`,
    '',
    '  Ctrl-C stops every process.',
    '',
  ].join('\n');
}

export interface DevFlags {
  dataDir: string;
  port?: string;
  json?: boolean;
}

export async function dev(flags: DevFlags): Promise<void> {
  const dataDir = resolve(flags.dataDir);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const stack = await startDevStack(dataDir);
  let server: TresorServer;
  let config: ServerConfig;
  try {
    config = resolveServerConfig({ dataDir, ...(flags.port ? { port: flags.port } : {}) });
    // The first backup a minute after the first start, so the dev stack shows backups working.
    server = await startTresorServer(
      { ...config, keyd: { kind: 'unix', socketPath: stack.keydSocket } },
      { firstBackupAfterMs: 60_000 },
    );
  } catch (err) {
    await stack.stop();
    throw err;
  }
  let credentials: DevCredentials;
  try {
    const tls = await ensureDevTls(dataDir);
    credentials = await devCredentials(server, dataDir, tls.caFile);
  } catch (err) {
    // Never leave a half-started stack behind: the server and keyd stop, the command exits.
    await server.close().catch(() => undefined);
    await stack.stop();
    throw err;
  }
  // Signals first: whoever reads the banner may press Ctrl-C at once.
  const stopped = handleServerSignals(server, () => stack.stop());
  warn('DEV STACK: keyd uses the plain root key file in the data folder. Never use this in production.');
  if (flags.json) out(credentials, true);
  else info(banner(credentials, stack, consoleOrigin(config, server.url)));
  await stopped;
}
