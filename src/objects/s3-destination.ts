/**
 * A destination on S3-compatible object storage (AWS S3, MinIO, Ceph RGW, …) through the AWS SDK v3:
 * `<bucket>/<prefix><backup id>/<object>`.
 *
 * The SDK is imported on first use only, so `tresor --help` and servers without an S3 destination
 * never load it. What the Destination contract asks (destination.ts), and how S3 gives it:
 * - put() is all or nothing: a single PutObject is atomic in S3 (an object is absent or whole);
 *   objects are at most a chunk (4 MiB), far below the 5 GiB single-PUT limit, so no multipart;
 * - integrity on the way: PutObject carries the body's SHA-256 (ChecksumAlgorithm SHA256 with the
 *   value computed here), which S3 checks before storing; GetObject asks for the stored checksum and,
 *   when the server gives a whole-object SHA-256, it must equal the body's. Servers that ignore
 *   checksums (s3rver, some gateways) still get the read-back of every digest (putVerified);
 * - list() pages through every object (1,000 a page) with ListObjects' Marker, the last key of the
 *   page before. ListObjectsV2's continuation tokens would do the same, but s3rver makes them with
 *   DES, which OpenSSL 3 no longer offers: its second page fails; Marker works on every server;
 * - bounded: connection and request timeouts (the request one per destination, `timeoutSeconds`),
 *   and the SDK's standard retry (3 attempts, exponential backoff with jitter) for throttling, 5xx
 *   and network errors.
 *
 * Errors become TRESOR_ERR_BACKUP_DESTINATION (TRESOR_ERR_BACKUP_NOT_FOUND for a missing object)
 * naming the destination, the operation and the S3 error name or network code and HTTP status, never
 * the SDK's message, a credential or a signature.
 */
import { createHash } from 'node:crypto';
import type { S3Client } from '@aws-sdk/client-s3';
import { checkObjectKey, type Destination } from './destination.ts';
import { BackupError } from './errors.ts';

export interface S3DestinationOptions {
  /** Report name (never a credential). */
  name: string;
  /** The service URL for S3-compatible servers (e.g. `https://minio.example:9000`); absent: AWS. */
  endpoint?: string;
  region: string;
  bucket: string;
  /** Prepended to every object key: '' or a path ending in '/' (one is added when missing). */
  prefix: string;
  /** Path-style URLs (`endpoint/bucket/key`), which most S3-compatible servers need. */
  forcePathStyle: boolean;
  accessKeyId: string;
  secretAccessKey: string;
  /**
   * The bound of one request (one attempt): no answer within it (a stalled or very slow server)
   * makes the attempt fail with TimeoutError; default 60 s. With the SDK's attempts, one operation
   * gives up after about MAX_ATTEMPTS times this.
   */
  requestTimeoutMs?: number;
}

/** A connection that is not up in this time is a failed attempt. */
const CONNECTION_TIMEOUT_MS = 5_000;
/** A request (a 4 MiB chunk at a few hundred kB/s) answered in less than this, or a failed attempt. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 60_000;
/** The SDK's standard retry mode: 3 attempts in all, exponential backoff with jitter. */
const MAX_ATTEMPTS = 3;

/** S3 error names that mean the credentials or the permissions are wrong: retrying does not help. */
const CREDENTIAL_ERRORS = new Set([
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'AccessDenied',
  'InvalidToken',
  'ExpiredToken',
  'Forbidden',
]);

export function createS3Destination(options: S3DestinationOptions): Destination {
  const { name, bucket } = options;
  const base = options.prefix === '' || options.prefix.endsWith('/') ? options.prefix : `${options.prefix}/`;
  let client: Promise<{ s3: S3Client; sdk: typeof import('@aws-sdk/client-s3') }> | undefined;
  const connect = () => {
    client ??= import('@aws-sdk/client-s3').then((sdk) => ({
      sdk,
      s3: new sdk.S3Client({
        region: options.region,
        ...(options.endpoint === undefined ? {} : { endpoint: options.endpoint }),
        forcePathStyle: options.forcePathStyle,
        credentials: { accessKeyId: options.accessKeyId, secretAccessKey: options.secretAccessKey },
        maxAttempts: MAX_ATTEMPTS,
        retryMode: 'standard',
        // The SDK only warns when requestTimeout passes unless throwOnRequestTimeout is set: without
        // it a stalled server held a backup for ever. socketTimeout bounds silence on the socket too.
        requestHandler: {
          connectionTimeout: CONNECTION_TIMEOUT_MS,
          requestTimeout: options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
          socketTimeout: options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
          throwOnRequestTimeout: true,
        },
        // We send our own SHA-256 on put and check it on get; no CRC32 of the SDK's besides.
        requestChecksumCalculation: 'WHEN_REQUIRED',
        responseChecksumValidation: 'WHEN_REQUIRED',
      }),
    }));
    return client;
  };
  const failed = (what: string, err: unknown) =>
    new BackupError('TRESOR_ERR_BACKUP_DESTINATION', `${name}: ${what} failed (${describe(err)})`);

  return {
    name,

    async put(key, data) {
      const objectKey = base + checkObjectKey(key);
      const { s3, sdk } = await connect();
      try {
        await s3.send(
          new sdk.PutObjectCommand({
            Bucket: bucket,
            Key: objectKey,
            Body: data,
            ContentLength: data.length,
            ContentType: 'application/octet-stream',
            ChecksumAlgorithm: 'SHA256',
            ChecksumSHA256: createHash('sha256').update(data).digest('base64'),
          }),
        );
      } catch (err) {
        throw failed(`writing ${key}`, err);
      }
    },

    async get(key) {
      const objectKey = base + checkObjectKey(key);
      const { s3, sdk } = await connect();
      let bytes: Buffer;
      let checksum: string | undefined;
      try {
        const answer = await s3.send(
          new sdk.GetObjectCommand({ Bucket: bucket, Key: objectKey, ChecksumMode: 'ENABLED' }),
        );
        if (answer.Body === undefined) throw failed(`reading ${key}`, { name: 'EmptyBody' });
        bytes = Buffer.from(await answer.Body.transformToByteArray());
        checksum = answer.ChecksumSHA256;
      } catch (err) {
        if (err instanceof BackupError) throw err;
        if (isNotFound(err))
          throw new BackupError('TRESOR_ERR_BACKUP_NOT_FOUND', `${name}: no object ${key}`);
        throw failed(`reading ${key}`, err);
      }
      // A whole-object checksum is base64 of 32 bytes; a multipart one ends in `-<parts>` and is not ours.
      if (checksum !== undefined && !checksum.includes('-')) {
        if (createHash('sha256').update(bytes).digest('base64') !== checksum) {
          throw new BackupError(
            'TRESOR_ERR_BACKUP_DESTINATION',
            `${name}: ${key} read back differs from the SHA-256 the server stored with it`,
          );
        }
      }
      return bytes;
    },

    async list(prefix) {
      const { s3, sdk } = await connect();
      const keys: string[] = [];
      let marker: string | undefined;
      try {
        for (;;) {
          const page = await s3.send(
            new sdk.ListObjectsCommand({
              Bucket: bucket,
              Prefix: base + prefix,
              ...(marker === undefined ? {} : { Marker: marker }),
            }),
          );
          const contents = page.Contents ?? [];
          for (const object of contents) {
            const key = object.Key?.slice(base.length);
            if (key !== undefined && object.Key?.startsWith(base) && isObjectKey(key)) keys.push(key);
          }
          // Without a delimiter S3 gives no NextMarker: the next page starts after the last key.
          const last = contents.at(-1)?.Key;
          if (page.IsTruncated !== true || last === undefined) break;
          marker = last;
        }
      } catch (err) {
        throw failed('listing', err);
      }
      return keys.sort();
    },

    async delete(key) {
      const objectKey = base + checkObjectKey(key);
      const { s3, sdk } = await connect();
      try {
        // S3 answers 204 for a key that is not there: removing what is absent is not an error.
        await s3.send(new sdk.DeleteObjectCommand({ Bucket: bucket, Key: objectKey }));
      } catch (err) {
        if (isNotFound(err)) return;
        throw failed(`deleting ${key}`, err);
      }
    },
  };
}

function isObjectKey(key: string): boolean {
  try {
    checkObjectKey(key);
    return key.includes('/');
  } catch {
    return false;
  }
}

function isNotFound(err: unknown): boolean {
  const e = err as { name?: unknown; $metadata?: { httpStatusCode?: number } };
  return e.name === 'NoSuchKey' || e.name === 'NotFound' || e.$metadata?.httpStatusCode === 404;
}

/**
 * What went wrong, in words that carry no secret: the S3 error name (or the network error code) and
 * the HTTP status. The SDK's messages are not used: some servers echo request details in them.
 */
function describe(err: unknown): string {
  const e = err as { name?: unknown; code?: unknown; $metadata?: { httpStatusCode?: number } };
  const status = e.$metadata?.httpStatusCode;
  const label =
    typeof e.code === 'string' && /^E[A-Z]+$/.test(e.code)
      ? e.code
      : typeof e.name === 'string' && /^[A-Za-z0-9]{1,64}$/.test(e.name)
        ? e.name
        : 'error';
  const kind = CREDENTIAL_ERRORS.has(label)
    ? 'credentials or permissions refused: '
    : label === 'NoSuchBucket'
      ? 'no such bucket: '
      : /^E(CONNREFUSED|CONNRESET|HOSTUNREACH|NOTFOUND|AI_AGAIN|PIPE)$/.test(label)
        ? 'server unreachable: '
        : label === 'ETIMEDOUT' || label === 'TimeoutError'
          ? 'no answer in time: '
          : '';
  return `${kind}${label}${status === undefined ? '' : `, HTTP ${status}`}`;
}
