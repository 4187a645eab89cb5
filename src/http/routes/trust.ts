/**
 * The live trust page (docs/verifying.md#the-live-trust-statement): what a security page promises,
 * with the live evidence behind each promise, for the public. GET /trust.json is the statement
 * signed by keyd (purpose `trust-statement`, published at GET /v1/keys); GET /trust renders the same
 * statement as plain HTML, readable without JavaScript, under a CSP that allows nothing but its own
 * inline style. Both are public and unaudited (like /healthz), rate-limited by address, and built at
 * most once a minute (the server's trust-statement.ts caches it).
 *
 * The statement holds no tenant, person, path or secret: protocol versions, the certificate's
 * names and dates, keyd's provider kind and sealed state, the audit log's latest signed
 * checkpoint, each backup destination's name and the age of its newest backup, availability.
 */
import { createHash } from 'node:crypto';
import Type from 'typebox';
import { defineRoute, type RouteModule } from '../route.ts';

export interface TrustStatement {
  statement: 'tresor-trust/v1';
  generatedAt: string;
  origin: string;
  tls: {
    minVersion: string;
    maxVersion: string;
    certificate: { subject: string; issuer: string; notAfter: string; daysLeft: number } | null;
  };
  keys: {
    keyd: {
      reachable: boolean;
      sealed: boolean | null;
      rootKey: string | null;
      channel: 'unix socket' | 'mutual TLS';
    };
  };
  audit: {
    checkpoint: { treeSize: number; signedAt: string; note: string } | null;
    witness: { kind: 'local'; treeSize: number | null };
  };
  backups: {
    intervalMinutes: number;
    destinations: { name: string; kind: string; newestBackupAt: string | null }[];
  };
  availability: {
    probing: boolean;
    objective: number;
    last30Days: {
      availability: number | null;
      observedMs: number;
      downMs: number;
      remainingBudgetRatio: number | null;
    };
  };
  scans: { recorded: { tool: string; at: string; result: string }[] };
}

export interface SignedTrustStatement {
  statement: TrustStatement;
  /** Ed25519 over `tresor-trust/v1\n<SHA-256 hex of the RFC 8785 statement>\n`, base64. */
  signature: string;
  keyName: string;
}

export interface TrustRouteDeps {
  signed(): Promise<SignedTrustStatement>;
}

const STYLE =
  'body{font:16px/1.5 system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;color:#1b1b1b}' +
  'h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem}table{border-collapse:collapse}' +
  'td,th{text-align:left;padding:.2rem .8rem .2rem 0;vertical-align:top}' +
  '.ok{color:#0a6b2d}.bad{color:#a31515}pre{white-space:pre-wrap;background:#f4f4f4;padding:.6rem}';

export const TRUST_PAGE_CSP = [
  "default-src 'none'",
  `style-src 'sha256-${createHash('sha256').update(STYLE).digest('base64')}'`,
  "frame-ancestors 'none'",
  "base-uri 'none'",
  "form-action 'none'",
].join('; ');

const html = (text: string) =>
  text.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] ?? c,
  );

function ago(iso: string | null, now: number): string {
  if (iso === null) return 'never';
  const minutes = Math.round((now - Date.parse(iso)) / 60_000);
  return minutes < 120 ? `${minutes} min ago` : `${Math.round(minutes / 60)} h ago`;
}

const mark = (good: boolean, text: string) => `<span class="${good ? 'ok' : 'bad'}">${html(text)}</span>`;

/** The statement as a page: each promise, then its evidence. */
export function renderTrustPage(signed: SignedTrustStatement): string {
  const s = signed.statement;
  const now = Date.parse(s.generatedAt);
  const row = (k: string, v: string) => `<tr><th scope="row">${html(k)}</th><td>${v}</td></tr>`;
  const cert = s.tls.certificate;
  const keyd = s.keys.keyd;
  const a = s.availability.last30Days;
  const pct = (x: number | null) => (x === null ? 'not measured yet' : `${(x * 100).toFixed(3)} %`);
  return [
    '<!doctype html><html lang="en"><head><meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>Trust — ${html(s.origin)}</title><style>${STYLE}</style></head><body>`,
    `<h1>What this Tresor deployment promises, and the live evidence</h1>`,
    `<p>Generated ${html(s.generatedAt)}. The same statement, signed by the key service, is at <a href="/trust.json">/trust.json</a>; its key is published at <a href="/v1/keys">/v1/keys</a> (purpose <code>trust-statement</code>).</p>`,
    '<h2>Encryption in transit</h2><table>',
    row('Protocols', html(`${s.tls.minVersion} to ${s.tls.maxVersion}; older versions are refused`)),
    row(
      'Certificate',
      cert
        ? `${html(cert.subject)}, issued by ${html(cert.issuer)}, valid until ${html(cert.notAfter)} (${mark(cert.daysLeft > 14, `${cert.daysLeft} days left`)})`
        : mark(false, 'not readable'),
    ),
    '</table><h2>Keys held apart from the data</h2><table>',
    row(
      'Key service',
      keyd.reachable ? mark(true, `reachable over a ${keyd.channel}`) : mark(false, 'not reachable'),
    ),
    row(
      'Sealed',
      keyd.sealed === null
        ? 'unknown'
        : keyd.sealed
          ? mark(false, 'sealed: no data can be read')
          : mark(true, 'unsealed, serving'),
    ),
    row('Root key', keyd.rootKey === null ? 'unknown' : mark(keyd.rootKey !== 'dev-file', keyd.rootKey)),
    '</table><h2>A tamper-evident audit log of every access</h2><table>',
    row(
      'Latest signed checkpoint',
      s.audit.checkpoint
        ? `${s.audit.checkpoint.treeSize} entries, signed ${html(ago(s.audit.checkpoint.signedAt, now))}<pre>${html(s.audit.checkpoint.note)}</pre>`
        : mark(false, 'none yet'),
    ),
    row(
      'Witness',
      s.audit.witness.treeSize === null
        ? 'none recorded'
        : `local witness holds a checkpoint of ${s.audit.witness.treeSize} entries`,
    ),
    '</table><h2>Backups at several places</h2><table>',
    row(
      'Schedule',
      html(s.backups.intervalMinutes > 0 ? `every ${s.backups.intervalMinutes} minutes` : 'on demand only'),
    ),
    ...s.backups.destinations.map((d) =>
      row(
        `${d.name} (${d.kind})`,
        d.newestBackupAt
          ? html(`newest backup ${ago(d.newestBackupAt, now)}`)
          : mark(false, 'no backup held'),
      ),
    ),
    '</table><h2>Availability</h2><table>',
    row('Objective', html(`${(s.availability.objective * 100).toFixed(1)} %`)),
    row(
      'Last 30 days',
      s.availability.probing ? html(pct(a.availability)) : 'not measured (no probe configured)',
    ),
    row(
      'Error budget left',
      a.remainingBudgetRatio === null ? '-' : html(`${(a.remainingBudgetRatio * 100).toFixed(1)} %`),
    ),
    '</table><h2>Third-party security testing</h2>',
    s.scans.recorded.length === 0
      ? '<p>No scan result recorded on this deployment.</p>'
      : `<table>${s.scans.recorded.map((r) => row(`${r.tool}, ${r.at}`, html(r.result))).join('')}</table>`,
    '</body></html>',
  ].join('\n');
}

const Signed = Type.Object({
  statement: Type.Object({}, { additionalProperties: true }),
  signature: Type.String({ description: 'Ed25519, base64' }),
  keyName: Type.String(),
});

export function trustRoutes(deps: TrustRouteDeps): RouteModule {
  return {
    name: 'trust',
    routes: [
      defineRoute({
        method: 'GET',
        url: '/trust.json',
        summary: 'The live trust statement, signed by keyd (verify with the trust-statement key of /v1/keys)',
        tags: ['system'],
        auth: 'none',
        secondFactor: false,
        authorize: 'public',
        audit: 'none-public',
        schema: { response: { 200: Signed } },
      }).handle(async () => ({
        status: 200,
        headers: { 'cache-control': 'no-cache' },
        body: (await deps.signed()) as never,
      })),
      defineRoute({
        method: 'GET',
        url: '/trust',
        summary: 'The live trust page (HTML): each promise with its live evidence',
        tags: ['system'],
        auth: 'none',
        secondFactor: false,
        authorize: 'public',
        audit: 'none-public',
        schema: { response: { 200: Type.String({ description: 'text/html' }) } },
      }).handle(async () => ({
        status: 200,
        headers: {
          'content-type': 'text/html; charset=utf-8',
          'content-security-policy': TRUST_PAGE_CSP,
          'cache-control': 'no-cache',
        },
        body: renderTrustPage(await deps.signed()),
      })),
    ],
  };
}
