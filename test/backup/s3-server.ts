/**
 * TEST-ONLY. A real S3-compatible server on loopback: the npm package `s3rver` (3.7.1), on a port
 * the kernel picks, storing objects in a temporary folder, with one bucket made at start.
 *
 * What s3rver checks, and what it does not (so the tests do not claim more than it proves):
 * - it knows one account, access key id `S3RVER` (secret `S3RVER`): an unknown access key id is
 *   refused with InvalidAccessKeyId (403); of a V4 signature it checks nothing else, so a wrong
 *   secret with the right key id is accepted (its source says "V4 … unimplemented");
 * - it neither verifies nor stores `x-amz-checksum-sha256` and never returns ChecksumSHA256, and
 *   skips payload-hash verification: integrity against it rests on our own read-back of every
 *   digest. Against AWS S3 the checksum is checked by the server too;
 * - it has no object versioning, locks or lifecycle rules.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

interface S3rverInstance {
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
}
type S3rverConstructor = new (options: Record<string, unknown>) => S3rverInstance;

const S3rver = createRequire(import.meta.url)('s3rver') as S3rverConstructor;

export const S3RVER_ACCESS_KEY_ID = 'S3RVER';
export const S3RVER_SECRET_ACCESS_KEY = 'S3RVER';

export interface LocalS3 {
  endpoint: string;
  bucket: string;
  /** The folder where s3rver keeps the objects (to search for plaintext, or tamper at rest). */
  directory: string;
  /** Every file s3rver stored, with its bytes. */
  storedFiles(): { path: string; bytes: Buffer }[];
  /** Stops the server (the destination is then gone); the stored objects stay until remove(). */
  stop(): Promise<void>;
  remove(): Promise<void>;
}

export async function startLocalS3(bucket = 'tresor-backups'): Promise<LocalS3> {
  const directory = mkdtempSync(join(tmpdir(), 'tresor-s3rver-'));
  const server = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory,
    configureBuckets: [{ name: bucket }],
  });
  const address = await server.run();
  let running = true;
  const stop = async () => {
    if (!running) return;
    running = false;
    await server.close();
  };
  return {
    endpoint: `http://127.0.0.1:${address.port}`,
    bucket,
    directory,
    storedFiles() {
      const out: { path: string; bytes: Buffer }[] = [];
      for (const entry of readdirSync(directory, { recursive: true }) as string[]) {
        const path = join(directory, entry);
        if (statSync(path).isFile()) out.push({ path, bytes: readFileSync(path) });
      }
      return out;
    },
    stop,
    async remove() {
      await stop();
      rmSync(directory, { recursive: true, force: true });
    },
  };
}
