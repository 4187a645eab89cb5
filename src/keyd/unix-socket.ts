/**
 * keyd's Unix socket file. The file mode is the access control, so the socket is created under
 * umask 0177 inside a folder that must be private (0700, ours), then chmod 0600.
 */
import { chmodSync, lstatSync, mkdirSync, statSync, unlinkSync } from 'node:fs';
import { connect as netConnect, type Server } from 'node:net';
import { dirname } from 'node:path';
import { configInvalid } from './listen-config.ts';

const SOCKET_FILE_MODE = 0o600;
const SOCKET_DIR_MODE = 0o700;

/** Binds `server` to the socket at `path`, mode 0600; returns the socket file's inode. */
export async function bindUnixSocket(server: Server, path: string): Promise<number> {
  prepareSocketPath(path);
  await listenWithUmask(server, path);
  chmodSync(path, SOCKET_FILE_MODE);
  const stat = lstatSync(path);
  if (!stat.isSocket() || (stat.mode & 0o777) !== SOCKET_FILE_MODE) {
    throw configInvalid(`keyd socket ${path} could not be made mode 0600`);
  }
  return stat.ino;
}

/** The socket's folder must be ours and private; a stale socket file is removed, anything else refused. */
function prepareSocketPath(path: string): void {
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true, mode: SOCKET_DIR_MODE });
  const dirStat = statSync(dir);
  const uid = process.getuid?.();
  if (!dirStat.isDirectory() || (uid !== undefined && dirStat.uid !== uid) || (dirStat.mode & 0o077) !== 0) {
    throw configInvalid(
      `keyd socket folder ${dir} must be private: owned by this user, mode 0700 (is ${(dirStat.mode & 0o777).toString(8)})`,
    );
  }
  let stat: ReturnType<typeof lstatSync> | undefined;
  try {
    stat = lstatSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  if (stat !== undefined && !stat.isSocket())
    throw configInvalid(`refusing to replace ${path}: it is not a socket`);
}

async function listenWithUmask(server: Server, path: string): Promise<void> {
  if (lstatExists(path)) {
    if (await isListening(path)) throw configInvalid(`another process already listens on ${path}`);
    unlinkSync(path);
  }
  await new Promise<void>((resolveListen, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) =>
      reject(configInvalid(`cannot listen on ${path} (${error.code ?? 'error'})`)),
    );
    // Node binds a pipe synchronously inside listen(), so the umask covers the socket's creation:
    // it is born 0600 and the chmod after it is a second lock, not the only one.
    const previous = setUmask(0o177);
    try {
      server.listen(path, () => resolveListen());
    } finally {
      if (previous !== undefined) setUmask(previous);
    }
  });
}

/** process.umask throws in worker threads; the private folder still protects the socket there. */
function setUmask(mask: number): number | undefined {
  try {
    return process.umask(mask);
  } catch {
    return undefined;
  }
}

function lstatExists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** True when something accepts connections on the socket (a live keyd), false for a stale file. */
function isListening(path: string): Promise<boolean> {
  return new Promise((done) => {
    const probe = netConnect(path);
    probe.once('connect', () => {
      probe.destroy();
      done(true);
    });
    probe.once('error', () => done(false));
  });
}

/** Removes the socket file unless another server has replaced it since (different inode). */
export function removeOwnSocket(path: string, ino: number | undefined): void {
  try {
    const stat = lstatSync(path);
    if (stat.isSocket() && stat.ino === ino) unlinkSync(path);
  } catch {
    // Already gone: Node unlinks a pipe when its server closes.
  }
}
