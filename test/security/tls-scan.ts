/**
 * The TLS scanners: testssl.sh (Debian's testssl.sh, run as `testssl`) and sslscan, each run
 * against host:port, their machine-readable report kept and parsed into findings. A finding fails
 * the security run; a notice is reported and does not.
 *
 * Pass criteria (RFC 9325, the policy in src/http/tls.ts): nothing below TLS 1.2; no NULL, export,
 * anonymous, RC4, DES/3DES, CBC or otherwise weak cipher, no weak curve or DH group; no known TLS
 * vulnerability (Heartbleed, CCS, ROBOT, CRIME, BREACH, POODLE, SWEET32, FREAK, DROWN, LOGJAM,
 * BEAST, LUCKY13, insecure renegotiation); HSTS on every answer.
 *
 * Expected with the dev CA, and reported as notices: its chain is not in the system trust store
 * (testssl `cert_chain_of_trust`), and it publishes neither CRL nor OCSP (`cert_revocation`,
 * no OCSP stapling). A production certificate from a public CA has both.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { reportPath, runTool } from './reports.ts';

export interface ScanResult {
  /** What fails the run: each line names the check and what the tool said. */
  findings: string[];
  /** Reported, not failing (expected with the dev CA, or informational). */
  notices: string[];
  /** The report file(s) kept. */
  reports: string[];
}

interface TestsslItem {
  id: string;
  severity: string;
  finding: string;
}

/** The certificate checks a dev CA cannot pass: reported, not failing (see the header). */
const DEV_CA_EXPECTED = new Set(['cert_chain_of_trust', 'cert_revocation']);
const FAILING = new Set(['MEDIUM', 'HIGH', 'CRITICAL']);
const BELOW_TLS12 = ['SSLv2', 'SSLv3', 'TLS1', 'TLS1_1'];

/**
 * testssl.sh limited to what matters here, so it runs in minutes: protocols (-p), cipher categories
 * (-s), forward secrecy and curves (-f), server defaults and certificate (-S), HTTP headers with HSTS (-h) and the vulnerabilities (-U). It never phones out (no
 * `--phone-out`), so offline it checks no CRL or OCSP responder.
 */
export const TESTSSL_SECTIONS = ['-p', '-s', '-f', '-S', '-h', '-U'] as const;

export async function testssl(
  target: string,
  name = 'testssl',
  sections: readonly string[] = TESTSSL_SECTIONS,
): Promise<ScanResult> {
  const json = reportPath(`${name}.json`);
  rmSync(json, { force: true }); // testssl refuses to overwrite a report
  const run = await runTool(
    'testssl',
    ['--quiet', '--warnings', 'off', '--color', '0', '--jsonfile', json, ...sections, target],
    { timeoutMs: 15 * 60_000 },
  );
  const text = reportPath(`${name}.txt`);
  writeFileSync(text, run.stdout + run.stderr);
  const findings: string[] = [];
  const notices: string[] = [];
  if (run.timedOut) findings.push(`testssl did not finish within its time limit`);
  let items: TestsslItem[] = [];
  try {
    items = JSON.parse(readFileSync(json, 'utf8')) as TestsslItem[];
  } catch (err) {
    findings.push(`testssl wrote no readable JSON report (exit ${run.status}): ${String(err)}`);
  }
  const byId = new Map(items.map((i) => [i.id, i]));
  for (const item of items) {
    const line = `${item.id} [${item.severity}] ${item.finding}`;
    if (item.id === 'scanProblem') findings.push(`testssl could not scan: ${line}`);
    else if (FAILING.has(item.severity)) (DEV_CA_EXPECTED.has(item.id) ? notices : findings).push(line);
    else if (item.severity === 'WARN' || item.severity === 'LOW') notices.push(line);
  }
  if (items.length > 0) {
    for (const id of sections.includes('-p') ? BELOW_TLS12 : []) {
      const finding = byId.get(id)?.finding ?? 'not tested';
      if (!/^not offered/.test(finding))
        findings.push(`${id}: ${finding} (nothing below TLS 1.2 may be offered)`);
    }
    // testssl names a present header by its parts (HSTS_time, …) and an absent one `HSTS`.
    const hsts = byId.get('HSTS_time');
    if (sections.includes('-h') && (hsts === undefined || hsts.severity !== 'OK')) {
      const absent = byId.get('HSTS');
      findings.push(`HSTS: ${(hsts ?? absent)?.finding ?? 'no Strict-Transport-Security header'}`);
    }
  }
  return { findings, notices, reports: [json, text] };
}

function attrs(tag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of tag.matchAll(/([a-z_-]+)="([^"]*)"/g)) out[m[1] as string] = m[2] as string;
  return out;
}

/** Ciphers no client of ours needs and an attacker likes: anything not an ECDHE/TLS 1.3 AEAD suite. */
function weakCipher(name: string, strength: string): boolean {
  if (strength !== 'strong' && strength !== 'acceptable') return true;
  if (name.startsWith('TLS_')) return false; // TLS 1.3: all AEAD with ephemeral key exchange
  return !/^ECDHE-(ECDSA|RSA)-(AES(128|256)-GCM-SHA(256|384)|CHACHA20-POLY1305)$/.test(name);
}

/** Groups of at least 128-bit security (RFC 9325 §4.2.1); sslscan's bits are the security level. */
function weakGroup(bits: number): boolean {
  return bits < 128;
}

export async function sslscan(target: string, name = 'sslscan'): Promise<ScanResult> {
  const xml = reportPath(`${name}.xml`);
  const run = await runTool('sslscan', ['--no-colour', `--xml=${xml}`, target], { timeoutMs: 5 * 60_000 });
  const findings: string[] = [];
  const notices: string[] = [];
  let doc = '';
  try {
    doc = readFileSync(xml, 'utf8');
  } catch {
    findings.push(`sslscan wrote no XML report (exit ${run.status}): ${run.stderr.slice(0, 300)}`);
  }
  if (run.timedOut) findings.push('sslscan did not finish within its time limit');
  const tags = (name: string) =>
    [...doc.matchAll(new RegExp(`<${name} [^>]*>`, 'g'))].map((m) => attrs(m[0]));
  const protocols = tags('protocol');
  if (doc !== '' && protocols.length === 0) findings.push('sslscan reported no protocol at all');
  for (const p of protocols) {
    const modern = p.type === 'tls' && (p.version === '1.2' || p.version === '1.3');
    if (!modern && p.enabled !== '0') findings.push(`protocol ${p.type} ${p.version} enabled`);
  }
  for (const c of tags('cipher')) {
    if (weakCipher(c.cipher ?? '', c.strength ?? '')) {
      findings.push(`weak cipher ${c.sslversion} ${c.cipher} (${c.strength}, ${c.bits} bits)`);
    }
  }
  for (const g of tags('group')) {
    if (weakGroup(Number(g.bits))) findings.push(`weak group ${g.sslversion} ${g.name} (${g.bits} bits)`);
  }
  for (const h of tags('heartbleed'))
    if (h.vulnerable !== '0') findings.push(`heartbleed on ${h.sslversion}`);
  for (const r of tags('renegotiation')) {
    if (r.supported === '1' && r.secure !== '1') findings.push('insecure renegotiation supported');
  }
  for (const c of tags('compression')) if (c.supported === '1') findings.push('TLS compression (CRIME)');
  if (/<expired>true<\/expired>/.test(doc)) findings.push('the certificate has expired');
  if (/<self-signed>true<\/self-signed>/.test(doc)) notices.push('the certificate is self-signed');
  const issuer = /<issuer><!\[CDATA\[(.*?)\]\]><\/issuer>/.exec(doc)?.[1];
  if (issuer !== undefined) notices.push(`certificate issued by ${issuer}`);
  return { findings, notices, reports: [xml] };
}
