/**
 * A second, deliberately independent verifier for Tresor's audit formats, used only by tests: if
 * src/audit and this file misread a spec the same way, they would have to do so in different code.
 *
 * Written from the specs alone and sharing nothing with src/audit:
 * - c2sp.org/signed-note and c2sp.org/tlog-checkpoint, parsed on bytes rather than strings;
 * - the verifier key format of golang.org/x/mod/sumdb/note (`<name>+<hex key ID>+<base64 key>`);
 * - RFC 9162 proofs checked by unfolding the recursive definitions of §2.1.3.1 (PATH) and §2.1.4.1
 *   (SUBPROOF), not by the bit-walking algorithms of §2.1.3.2 / §2.1.4.2 that src/audit follows,
 *   with bigint sizes instead of numbers;
 * - Ed25519 through node:crypto with an SPKI (RFC 8410) key instead of a JWK.
 * Every failure is a plain Error or `false`; the messages are for test output only.
 */
import { createHash, createPublicKey, verify as verifySignature } from 'node:crypto';

const EM_DASH_SPACE = Buffer.from([0xe2, 0x80, 0x94, 0x20]);
const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex'); // RFC 8410 §4

function sha256(...parts: Uint8Array[]): Buffer {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
}

export function independentLeafHash(leaf: Uint8Array): Buffer {
  return sha256(Buffer.from([0]), leaf);
}

function interior(left: Buffer, right: Buffer): Buffer {
  return sha256(Buffer.from([1]), left, right);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;
}

function splitPoint(n: bigint): bigint {
  let k = 1n;
  while (k << 1n < n) k <<= 1n;
  return k;
}

// §2.1.3.1 read backwards: the last path element is the sibling at the top split.
function rootFromPath(m: bigint, n: bigint, leaf: Buffer, path: Buffer[]): Buffer | null {
  if (n === 1n) return path.length === 0 ? leaf : null;
  const top = path.at(-1);
  if (top === undefined || top.length !== 32) return null;
  const k = splitPoint(n);
  if (m < k) {
    const left = rootFromPath(m, k, leaf, path.slice(0, -1));
    return left && interior(left, top);
  }
  const right = rootFromPath(m - k, n - k, leaf, path.slice(0, -1));
  return right && interior(top, right);
}

export function independentVerifyInclusion(
  leafHash: Buffer,
  index: bigint,
  size: bigint,
  proof: Buffer[],
  root: Buffer,
): boolean {
  if (index < 0n || index >= size || leafHash.length !== 32) return false;
  const computed = rootFromPath(index, size, leafHash, proof);
  return computed !== null && sameBytes(computed, root);
}

// §2.1.4.1 read backwards: returns [old hash, new hash] of the subtree, or null if the proof does not fit.
function subproof(
  m: bigint,
  n: bigint,
  whole: boolean,
  proof: Buffer[],
  oldRoot: Buffer,
): [Buffer, Buffer] | null {
  if (m === n) {
    if (whole) return proof.length === 0 ? [oldRoot, oldRoot] : null;
    const only = proof[0];
    return proof.length === 1 && only !== undefined && only.length === 32 ? [only, only] : null;
  }
  const top = proof.at(-1);
  if (top === undefined || top.length !== 32) return null;
  const k = splitPoint(n);
  if (m <= k) {
    const left = subproof(m, k, whole, proof.slice(0, -1), oldRoot);
    return left && [left[0], interior(left[1], top)];
  }
  const right = subproof(m - k, n - k, false, proof.slice(0, -1), oldRoot);
  return right && [interior(top, right[0]), interior(top, right[1])];
}

export function independentVerifyConsistency(
  size1: bigint,
  size2: bigint,
  proof: Buffer[],
  root1: Buffer,
  root2: Buffer,
): boolean {
  if (size1 <= 0n || size1 > size2) return false;
  if (size1 === size2) return proof.length === 0 && sameBytes(root1, root2);
  const roots = subproof(size1, size2, true, proof, root1);
  return roots !== null && sameBytes(roots[0], root1) && sameBytes(roots[1], root2);
}

interface Key {
  name: string;
  id: Buffer;
  publicKey: Buffer;
}

export function independentParseVerifierKey(vkey: string): Key {
  const [name, idHex, ...rest] = vkey.split('+');
  const data = Buffer.from(rest.join('+'), 'base64');
  if (!name || /\s/u.test(name) || !idHex || !/^[0-9a-f]{8}$/i.test(idHex))
    throw new Error('bad verifier key');
  if (data.length !== 33 || data[0] !== 1) throw new Error('not an Ed25519 verifier key');
  const id = Buffer.from(idHex, 'hex');
  const expected = sha256(Buffer.from(name, 'utf8'), Buffer.from('\n'), data).subarray(0, 4);
  if (!sameBytes(id, expected)) throw new Error('key ID does not match the key');
  return { name, id, publicKey: data.subarray(1) };
}

/** Returns the note text if at least one signature by `vkey` verifies and none by it fails. */
export function independentOpenNote(note: string | Uint8Array, vkey: string): string {
  const key = independentParseVerifierKey(vkey);
  const bytes = Buffer.from(note);
  new TextDecoder('utf-8', { fatal: true }).decode(bytes); // throws on invalid UTF-8
  if (bytes.some((b) => b < 0x20 && b !== 0x0a)) throw new Error('control character in note');
  const cut = bytes.lastIndexOf('\n\n');
  if (cut < 0) throw new Error('no signature block');
  const text = bytes.subarray(0, cut + 1);
  const block = bytes.subarray(cut + 2);
  if (block.length === 0 || block.at(-1) !== 0x0a) throw new Error('signature block must end in a newline');
  const publicKey = createPublicKey({
    key: Buffer.concat([SPKI_ED25519_PREFIX, key.publicKey]),
    format: 'der',
    type: 'spki',
  });
  let good = 0;
  let start = 0;
  while (start < block.length) {
    const end = block.indexOf(0x0a, start);
    const line = block.subarray(start, end);
    start = end + 1;
    if (!line.subarray(0, 4).equals(EM_DASH_SPACE)) throw new Error('signature line without em dash');
    const body = line.subarray(4).toString('utf8');
    const space = body.indexOf(' ');
    if (space <= 0) throw new Error('signature line without key name');
    const name = body.slice(0, space);
    const b64 = body.slice(space + 1);
    const raw = Buffer.from(b64, 'base64');
    if (raw.toString('base64') !== b64 || raw.length < 5) throw new Error('bad signature encoding');
    if (name !== key.name || !raw.subarray(0, 4).equals(key.id)) continue; // unknown key: ignored
    if (!verifySignature(null, text, publicKey, raw.subarray(4)))
      throw new Error('bad signature by the known key');
    good += 1;
  }
  if (good === 0) throw new Error('no signature by the known key');
  return text.toString('utf8');
}

export interface IndependentCheckpoint {
  origin: string;
  size: bigint;
  root: Buffer;
}

export function independentOpenCheckpoint(note: string | Uint8Array, vkey: string): IndependentCheckpoint {
  const lines = independentOpenNote(note, vkey).split('\n');
  if (lines.pop() !== '') throw new Error('checkpoint text must end in a newline');
  const [origin, size, root] = lines;
  if (lines.length < 3 || lines.some((l) => l === '')) throw new Error('checkpoint needs 3 non-empty lines');
  if (origin === undefined || size === undefined || root === undefined) throw new Error('unreachable');
  if (!/^(0|[1-9][0-9]*)$/.test(size)) throw new Error('bad tree size');
  const rootBytes = Buffer.from(root, 'base64');
  if (rootBytes.length !== 32 || rootBytes.toString('base64') !== root) throw new Error('bad root hash');
  return { origin, size: BigInt(size), root: rootBytes };
}
