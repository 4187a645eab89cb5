/**
 * Calls that must not appear in the product's code, or only where a document says so
 * (docs/security/asvs.md cites this file):
 *
 * - no dynamic code: `eval`, `new Function`, `node:vm` (ASVS 1.3.2);
 * - no shell: `exec`/`execSync` or `shell: true`; child processes only in the files listed below,
 *   with argument arrays (ASVS 1.2.5);
 * - no `fetch`, which follows redirects: outbound HTTP uses node:https `request`, which does not
 *   (ASVS 15.3.2);
 * - no CORS: no `Access-Control-*` header and no CORS plugin (ASVS 3.4.2);
 * - cryptographic operations (ciphers, MACs, KDFs, signatures, key generation) only in files that the
 *   cryptographic inventory, docs/security/crypto-inventory.md, names: a new one fails here until it
 *   is written down there (ASVS 11.1.2, 11.1.3).
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SRC = join(ROOT, 'src');

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...sources(path));
    else if (/\.(ts|js|mjs)$/.test(name)) out.push(path);
  }
  return out;
}

/** Source text without comments, so a comment that names a forbidden call does not count. */
function code(path: string): string {
  return readFileSync(path, 'utf8')
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .replace(/(^|[^:'"`\\])\/\/.*$/gm, '$1');
}

const FILES = sources(SRC).map((path) => ({ path, rel: relative(ROOT, path), text: code(path) }));

/** Files that may start child processes (argument arrays, never a shell). */
const CHILD_PROCESS_FILES = new Set(['src/cli/dev-impl.ts']);

/** node:crypto functions that encrypt, authenticate, derive or sign (hashing and parsing excluded). */
const CRYPTO_OPERATIONS = [
  'createCipheriv',
  'createDecipheriv',
  'createHmac',
  'createSign',
  'createVerify',
  'sign',
  'verify',
  'scrypt',
  'scryptSync',
  'hkdf',
  'hkdfSync',
  'pbkdf2',
  'pbkdf2Sync',
  'generateKeyPair',
  'generateKeyPairSync',
  'generateKey',
  'generateKeySync',
  'createPrivateKey',
  'createPublicKey',
  'publicEncrypt',
  'privateDecrypt',
  'diffieHellman',
  'createECDH',
];

function cryptoOperationsIn(text: string): string[] {
  const found = new Set<string>();
  for (const m of text.matchAll(/import\s*\{([^}]*)\}\s*from\s*'node:crypto'/g)) {
    for (const part of (m[1] ?? '').split(',')) {
      const name =
        part
          .replace(/^\s*type\s+/, '')
          .split(/\s+as\s+/)[0]
          ?.trim() ?? '';
      if (CRYPTO_OPERATIONS.includes(name)) found.add(name);
    }
  }
  for (const m of text.matchAll(/import\s+\*\s+as\s+(\w+)\s+from\s*'node:crypto'/g)) {
    for (const op of CRYPTO_OPERATIONS) {
      if (new RegExp(`\\b${m[1]}\\.${op}\\b`).test(text)) found.add(op);
    }
  }
  return [...found].sort();
}

describe('calls the product does not make', () => {
  it('evaluates no code at run time', () => {
    const hits = FILES.filter((f) => /\beval\s*\(|\bnew\s+Function\s*\(|from\s*'node:vm'/.test(f.text));
    assert.deepEqual(
      hits.map((f) => f.rel),
      [],
    );
  });

  it('runs no shell, and child processes only where listed', () => {
    const shell = FILES.filter((f) => /(^|[^.\w])(exec|execSync)\s*\(|shell\s*:\s*true/m.test(f.text));
    assert.deepEqual(
      shell.map((f) => f.rel),
      [],
    );
    const spawning = FILES.filter((f) => /from\s*'node:child_process'/.test(f.text)).map((f) => f.rel);
    assert.deepEqual(
      spawning.filter((rel) => !CHILD_PROCESS_FILES.has(rel)),
      [],
    );
  });

  it('uses no fetch (it follows redirects) for outbound requests', () => {
    // The console's browser scripts (src/http/console/) call fetch in the browser, against their own origin.
    const server = FILES.filter((f) => !f.rel.startsWith('src/http/console/'));
    const hits = server.filter((f) => /(^|[^.\w])fetch\s*\(/m.test(f.text));
    assert.deepEqual(
      hits.map((f) => f.rel),
      [],
    );
  });

  it('sends no CORS header and loads no CORS plugin', () => {
    const hits = FILES.filter((f) => /access-control-allow|@fastify\/cors/i.test(f.text));
    assert.deepEqual(
      hits.map((f) => f.rel),
      [],
    );
  });
});

describe('the cryptographic inventory', () => {
  const inventory = readFileSync(join(ROOT, 'docs', 'security', 'crypto-inventory.md'), 'utf8');

  it('names every file that calls a cryptographic operation of node:crypto', () => {
    const users = FILES.map((f) => ({ rel: f.rel, ops: cryptoOperationsIn(f.text) })).filter(
      (f) => f.ops.length > 0,
    );
    assert.ok(users.length >= 5, `found only ${users.length} files; the scan is broken`);
    const missing = users
      .filter((f) => !inventory.includes(`\`${f.rel}\``))
      .map((f) => `${f.rel} (${f.ops.join(', ')})`);
    assert.deepEqual(missing, [], 'add these files to docs/security/crypto-inventory.md, with what they do');
  });

  it('names no file that no longer exists', () => {
    const named = [...inventory.matchAll(/`(src\/[^`\s]+\.ts)`/g)].map((m) => m[1] ?? '');
    const gone = named.filter((rel) => !FILES.some((f) => f.rel === rel));
    assert.deepEqual(gone, []);
  });
});
