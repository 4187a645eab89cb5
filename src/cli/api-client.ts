/**
 * The CLI's one HTTPS client of the Tresor API, shared by every command that talks to a server.
 *
 * - https only (a credential never travels in clear), node:https trusting --ca-file (else
 *   TRESOR_CA_FILE, else the profile's CA file, else the system's CAs), a bounded deadline.
 * - URL from --url, else TRESOR_URL, else the profile's.
 * - Credential, first found: --token-file, env TRESOR_TOKEN (a bearer: operator token or tenant
 *   API key), else the console session of the profile (`tresor login`): its cookie, and its CSRF
 *   token on every request that is not a GET.
 * - Step-up: when a session request answers 401 TRESOR_ERR_SECOND_FACTOR_REQUIRED, the client
 *   passes the second factor again (POST /v1/auth/reauthenticate with --code, or a code typed on a
 *   terminal), saves the new session to the profile (the old cookie stops working) and retries once.
 * - Failures: the server's problem+json as `tresor: CODE: detail` (exit 1); no answer (refused,
 *   unknown host, TLS failure, deadline) exit 3; usage exit 2. No message carries a credential or
 *   anything the server echoed unfiltered.
 */
import { readFileSync } from 'node:fs';
import type { IncomingHttpHeaders } from 'node:http';
import { request } from 'node:https';
import { resolve } from 'node:path';
import { hasControlCharacter } from '../text.ts';
import { readSecret, readSecretFile, usageError } from './io.ts';
import { type Profile, profilePath, readProfile, saveProfile } from './profile.ts';

export const DEADLINE_MS = 10_000;
export const SESSION_COOKIE = '__Host-tresor_session';
const TOTP_CODE = /^[0-9]{6}$/;

/** A command that failed: printed by main.ts as `tresor: CODE: message`, exit code as given. */
export class CliFailure extends Error {
  readonly code: string | undefined;
  readonly exitCode: number;
  constructor(message: string, options: { code?: string; exitCode?: number } = {}) {
    super(message);
    this.name = 'CliFailure';
    this.code = options.code;
    this.exitCode = options.exitCode ?? 1;
  }
}

/** The flags every server command takes. */
export interface ConnectionFlags {
  url?: string;
  caFile?: string;
  tokenFile?: string;
  profile?: string;
  /** A current TOTP code for a step-up (a one-time code, not a standing secret). */
  code?: string;
}

export type Credential =
  | { kind: 'bearer'; token: string }
  | { kind: 'session'; profile: Profile; path: string }
  | { kind: 'none' };

export interface Connection {
  base: URL;
  ca: Buffer | undefined;
  caFile: string | undefined;
  credential: Credential;
  code: string | undefined;
}

export type Outcome =
  | { kind: 'answer'; status: number; headers: IncomingHttpHeaders; text: string }
  | { kind: 'unreachable'; why: string };

/** What the server sent, fit for a terminal: control characters replaced. */
export function printable(value: unknown): string {
  const text = String(value);
  return hasControlCharacter(text) ? text.replace(/\p{Cc}/gu, '?') : text;
}

/** An https origin, or a usage error. */
export function httpsBase(command: string, text: string | undefined, from = '--url'): URL {
  if (!text) throw usageError(command, 'no server URL: give --url, set TRESOR_URL, or run tresor login');
  let base: URL;
  try {
    base = new URL(text);
  } catch {
    throw usageError(command, `${from} must be an https URL, e.g. https://vault.example:8443`);
  }
  if (base.protocol !== 'https:')
    throw usageError(command, `${from} must be an https URL (credentials never go in clear)`);
  return base;
}

export function readCa(command: string, caFile: string | undefined): Buffer | undefined {
  if (caFile === undefined) return undefined;
  try {
    return readFileSync(caFile);
  } catch (err) {
    throw usageError(command, `cannot read the CA file: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
}

/** --token-file, else TRESOR_TOKEN; undefined when neither is given. */
export function bearerToken(command: string, tokenFile: string | undefined): string | undefined {
  const token =
    tokenFile !== undefined
      ? readSecretFile(command, '--token-file', tokenFile)
      : process.env.TRESOR_TOKEN?.trim();
  if (token === undefined || token === '') return undefined;
  if (hasControlCharacter(token)) throw usageError(command, 'the token holds a control character');
  return token;
}

export function checkCode(command: string, code: string | undefined): string | undefined {
  if (code !== undefined && !TOTP_CODE.test(code)) throw usageError(command, '--code must be 6 digits');
  return code;
}

/**
 * The server, CA and credential of a command (see the header). `credential: 'none'` for the routes
 * that need none (login, enrolment).
 */
export function connect(
  command: string,
  flags: ConnectionFlags,
  options: { credential: 'required' | 'none'; fallbackUrl?: string } = { credential: 'required' },
): Connection {
  const path = profilePath(flags.profile);
  const profile = readProfile(path);
  let credential: Credential = { kind: 'none' };
  if (options.credential === 'required') {
    const token = bearerToken(command, flags.tokenFile);
    if (token !== undefined) credential = { kind: 'bearer', token };
    else if (profile) credential = { kind: 'session', profile, path };
    else
      throw usageError(
        command,
        `no credential: give --token-file, set TRESOR_TOKEN, or run tresor login (no session in ${path})`,
      );
  }
  const urlText = flags.url ?? process.env.TRESOR_URL ?? options.fallbackUrl ?? profile?.url;
  const base = httpsBase(command, urlText, flags.url !== undefined ? '--url' : 'the server URL');
  const caFlag = flags.caFile ?? process.env.TRESOR_CA_FILE;
  const caFile = caFlag !== undefined ? resolve(caFlag) : profile?.caFile;
  return {
    base,
    ca: readCa(command, caFile),
    caFile,
    credential,
    code: checkCode(command, flags.code),
  };
}

/** An error's code (ECONNREFUSED, CERT_HAS_EXPIRED…) or class: never a message that could echo input. */
function describe(err: Error): string {
  if (err.name === 'AbortError' || err.name === 'TimeoutError') return `no answer within ${DEADLINE_MS} ms`;
  const code = (err as NodeJS.ErrnoException).code;
  return typeof code === 'string' ? code : err.name;
}

/** One HTTPS request; never throws: an answer of any status, or why there was none. */
export function send(
  url: URL,
  init: { method: string; headers: Record<string, string>; body?: string; ca: Buffer | undefined },
): Promise<Outcome> {
  return new Promise((resolveOutcome) => {
    const payload = init.body === undefined ? undefined : Buffer.from(init.body, 'utf8');
    const headers: Record<string, string> = { accept: 'application/json', ...init.headers };
    if (payload !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(payload.length);
    }
    const req = request(
      url,
      {
        method: init.method,
        headers,
        ...(init.ca ? { ca: init.ca } : {}),
        signal: AbortSignal.timeout(DEADLINE_MS),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (err) => resolveOutcome({ kind: 'unreachable', why: describe(err) }));
        res.on('end', () =>
          resolveOutcome({
            kind: 'answer',
            status: res.statusCode ?? 0,
            headers: res.headers,
            text: Buffer.concat(chunks).toString('utf8'),
          }),
        );
      },
    );
    req.on('error', (err) => resolveOutcome({ kind: 'unreachable', why: describe(err) }));
    req.end(payload);
  });
}

function parsed(text: string): unknown {
  try {
    return text === '' ? undefined : JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** The failure a non-2xx answer stands for: its problem code and detail, printable. */
export function failureOf(status: number, body: unknown): CliFailure {
  const p = (body ?? {}) as { code?: unknown; detail?: unknown; title?: unknown };
  const code = typeof p.code === 'string' ? printable(p.code) : undefined;
  const text = typeof p.detail === 'string' ? p.detail : typeof p.title === 'string' ? p.title : '';
  const message = `the server answered ${status}${text ? `: ${printable(text)}` : ''}`;
  return new CliFailure(message, code === undefined ? {} : { code });
}

export function unreachable(base: URL, why: string): CliFailure {
  return new CliFailure(`cannot reach ${base.origin}: ${why}`, { exitCode: 3 });
}

/** The session cookie a `Set-Cookie` header sets, if any. */
export function sessionCookieOf(headers: IncomingHttpHeaders): string | undefined {
  for (const line of headers['set-cookie'] ?? []) {
    const match = new RegExp(`^${SESSION_COOKIE}=([A-Za-z0-9_-]+);`).exec(line);
    if (match?.[1]) return match[1];
  }
  return undefined;
}

/** A new session's answer (NewSessionBody + cookie) as a profile, or undefined if it is not one. */
export function profileOf(
  headers: IncomingHttpHeaders,
  answer: unknown,
  rest: { url: string; caFile: string | undefined; email: string },
): Profile | undefined {
  const cookie = sessionCookieOf(headers);
  const body = answer as {
    csrfToken?: unknown;
    session?: { personId?: unknown; absoluteExpiresAt?: unknown };
  };
  if (
    !cookie ||
    typeof body?.csrfToken !== 'string' ||
    typeof body.session?.absoluteExpiresAt !== 'string' ||
    typeof body.session.personId !== 'string'
  )
    return undefined;
  return {
    url: rest.url,
    ...(rest.caFile !== undefined ? { caFile: rest.caFile } : {}),
    cookie,
    csrf: body.csrfToken,
    expiresAt: body.session.absoluteExpiresAt,
    email: rest.email,
    personId: body.session.personId,
  };
}

/**
 * A session's changes also name the server's origin, as a browser on the console would: the server
 * refuses a cookie-authenticated change from any other origin, or from none.
 */
function credentialHeaders(credential: Credential, method: string, base: URL): Record<string, string> {
  if (credential.kind === 'bearer') return { authorization: `Bearer ${credential.token}` };
  if (credential.kind === 'session')
    return {
      cookie: `${SESSION_COOKIE}=${credential.profile.cookie}`,
      ...(method !== 'GET' ? { 'x-csrf-token': credential.profile.csrf, origin: base.origin } : {}),
    };
  return {};
}

/** A TOTP code for a step-up: --code, else typed on a terminal; undefined when neither can be had. */
async function stepUpCode(conn: Connection): Promise<string | undefined> {
  if (conn.code !== undefined) return conn.code;
  if (!process.stdin.isTTY) return undefined;
  const typed = (await readSecret('second factor needed: TOTP code: ')).trim();
  return TOTP_CODE.test(typed) ? typed : undefined;
}

/** POST /v1/auth/reauthenticate: the session's new cookie and CSRF token, saved to the profile. */
export async function reauthenticate(
  conn: Connection,
  credential: Extract<Credential, { kind: 'session' }>,
  code: string,
): Promise<void> {
  const outcome = await send(new URL('/v1/auth/reauthenticate', conn.base), {
    method: 'POST',
    headers: credentialHeaders(credential, 'POST', conn.base),
    body: JSON.stringify({ totp: code }),
    ca: conn.ca,
  });
  if (outcome.kind === 'unreachable') throw unreachable(conn.base, outcome.why);
  if (outcome.status !== 200) throw failureOf(outcome.status, parsed(outcome.text));
  const renewed = profileOf(outcome.headers, parsed(outcome.text), {
    url: credential.profile.url,
    caFile: credential.profile.caFile,
    email: credential.profile.email,
  });
  if (!renewed) throw new CliFailure('the server answered the re-authentication with no session');
  saveProfile(credential.path, renewed);
  credential.profile = renewed;
}

export interface ApiAnswer<T> {
  status: number;
  headers: IncomingHttpHeaders;
  body: T;
}

/**
 * One API call with the connection's credential; a 2xx answer's parsed body, or a CliFailure.
 * A session that needs a fresh second factor re-proves it once (see the header).
 */
export async function call<T = unknown>(
  conn: Connection,
  method: string,
  path: string,
  body?: unknown,
): Promise<ApiAnswer<T>> {
  const url = new URL(path, conn.base);
  const attempt = () =>
    send(url, {
      method,
      headers: credentialHeaders(conn.credential, method, conn.base),
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      ca: conn.ca,
    });
  let outcome = await attempt();
  if (outcome.kind === 'unreachable') throw unreachable(conn.base, outcome.why);
  let answer = parsed(outcome.text);
  const credential = conn.credential;
  if (
    outcome.status === 401 &&
    credential.kind === 'session' &&
    (answer as { code?: unknown } | undefined)?.code === 'TRESOR_ERR_SECOND_FACTOR_REQUIRED'
  ) {
    const code = await stepUpCode(conn);
    if (code === undefined)
      throw new CliFailure('this needs a fresh second factor: give --code with a current TOTP code', {
        code: 'TRESOR_ERR_SECOND_FACTOR_REQUIRED',
      });
    await reauthenticate(conn, credential, code);
    outcome = await attempt();
    if (outcome.kind === 'unreachable') throw unreachable(conn.base, outcome.why);
    answer = parsed(outcome.text);
  }
  if (outcome.status < 200 || outcome.status > 299) {
    const failure = failureOf(outcome.status, answer);
    if (
      outcome.status === 401 &&
      credential.kind === 'session' &&
      failure.code === 'TRESOR_ERR_UNAUTHENTICATED'
    )
      throw new CliFailure(`${failure.message} (the saved session has ended: run tresor login)`, {
        code: failure.code,
      });
    throw failure;
  }
  return { status: outcome.status, headers: outcome.headers, body: answer as T };
}
