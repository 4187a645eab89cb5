/**
 * TLS for `tresor dev` and for a server started without certificates: a development CA and a
 * server certificate for localhost, 127.0.0.1 and ::1, made once in <dataDir>/tls and reused, so
 * clients trust one CA file (`ca.pem`, listed in dev-credentials.json) across restarts.
 *
 * Private keys are written 0600 in a 0700 folder, through a temporary file and a rename so a crash
 * never leaves half a key. The server certificate is reissued from the same CA when it has less
 * than RENEW_BEFORE_DAYS left. Validity 397 days: the CA/Browser Forum limit for TLS server
 * certificates, so tools that enforce it accept ours.
 */
import { X509Certificate } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { type CertificateAndKey, createDevCa, issueCertificate } from '../tls/dev-ca.ts';

export interface DevTlsFiles {
  caFile: string;
  certFile: string;
  keyFile: string;
}

const SERVER_DAYS = 397;
const RENEW_BEFORE_DAYS = 30;
const DAY_MS = 86_400_000;

function writeAtomically(path: string, content: string, mode: number): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, content, { mode, flag: 'w' });
  chmodSync(tmp, mode); // the umask may have narrowed or the file may have existed
  // Synced before the rename, and the folder after it: a power cut must not leave an empty file
  // under the final name (test/e2e/power-cut.test.ts found exactly that: the server then refused to start).
  syncPath(tmp);
  renameSync(tmp, path);
  syncPath(dirname(path));
}

function syncPath(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function readPair(certFile: string, keyFile: string): CertificateAndKey | undefined {
  if (!existsSync(certFile) || !existsSync(keyFile)) return undefined;
  return { certPem: readFileSync(certFile, 'utf8'), keyPem: readFileSync(keyFile, 'utf8') };
}

/** Creates (first run) or reuses the development CA and server certificate; returns their files. */
export async function ensureDevTls(dataDir: string): Promise<DevTlsFiles> {
  const dir = join(dataDir, 'tls');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const files = {
    caFile: join(dir, 'ca.pem'),
    caKeyFile: join(dir, 'ca-key.pem'),
    certFile: join(dir, 'server.pem'),
    keyFile: join(dir, 'server-key.pem'),
  };

  let ca = readPair(files.caFile, files.caKeyFile);
  let renewServer = false;
  if (!ca) {
    ca = await createDevCa({ commonName: 'Tresor development CA' });
    writeAtomically(files.caKeyFile, ca.keyPem, 0o600);
    writeAtomically(files.caFile, ca.certPem, 0o644);
    renewServer = true;
  }

  const server = readPair(files.certFile, files.keyFile);
  if (!server || renewServer || expiresSoon(server.certPem) || !issuedBy(server.certPem, ca.certPem)) {
    const issued = await issueCertificate(ca, {
      commonName: 'localhost',
      sans: { dns: ['localhost'], ip: ['127.0.0.1', '::1'] },
      usage: 'server',
      days: SERVER_DAYS,
    });
    writeAtomically(files.keyFile, issued.keyPem, 0o600);
    writeAtomically(files.certFile, issued.certPem, 0o644);
  }
  return { caFile: files.caFile, certFile: files.certFile, keyFile: files.keyFile };
}

function expiresSoon(certPem: string): boolean {
  try {
    return Date.parse(new X509Certificate(certPem).validTo) - Date.now() < RENEW_BEFORE_DAYS * DAY_MS;
  } catch {
    return true;
  }
}

function issuedBy(certPem: string, caPem: string): boolean {
  try {
    const cert = new X509Certificate(certPem);
    const ca = new X509Certificate(caPem);
    return cert.checkIssued(ca) && cert.verify(ca.publicKey);
  } catch {
    return false;
  }
}
