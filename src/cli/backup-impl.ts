/** What `tresor backup …` does (backup.ts declares the commands). */
import { setTimeout as sleep } from 'node:timers/promises';
import { CliFailure, type ConnectionFlags, call, connect } from './api-client.ts';
import { usageError } from './io.ts';
import { emit, type OutputFlags, segment } from './noun-output.ts';
import { table } from './table.ts';

export interface BackupFlags extends ConnectionFlags, OutputFlags {}
export interface BackupNowFlags extends BackupFlags {
  wait?: boolean;
  readTokenFile?: string;
  timeout?: string;
}
export interface BackupListFlags extends BackupFlags {
  limit?: string;
}
export interface BackupVerifyFlags extends BackupFlags {
  /** false with --no-wait: answer once the verification has started. */
  wait?: boolean;
  readTokenFile?: string;
  timeout?: string;
}

interface Copy {
  name: string;
  state: string;
  attempts: number;
  error: { code: string; message: string } | null;
  verification: { result: string; at: string; code: string | null } | null;
}

interface Backup {
  id: string;
  trigger: string;
  startedAt: string;
  endedAt: string | null;
  outcome: string;
  storedBytes: number | null;
  errorCode: string | null;
  verification: { result: string; at: string } | null;
  verifying?: boolean;
  destinations: Copy[];
}

const POLL_MS = 500;

export async function nowCommand(flags: BackupNowFlags): Promise<void> {
  const command = 'tresor backup now';
  const timeoutS = flags.timeout === undefined ? 600 : Number(flags.timeout);
  if (!Number.isSafeInteger(timeoutS) || timeoutS < 1)
    throw usageError(command, '--timeout must be a whole number of seconds');
  const conn = connect(command, flags);
  const { body } = await call<{ id: string }>(conn, 'POST', '/v1/backups');
  if (!flags.wait) {
    emit(flags, body, `backup ${body.id} started (tresor backup list shows how it went)`);
    return;
  }
  // An operator token has one scope: one of backups:run starts, one of backups:read follows it.
  const reader =
    flags.readTokenFile === undefined ? conn : connect(command, { ...flags, tokenFile: flags.readTokenFile });
  const deadline = Date.now() + timeoutS * 1000;
  let backup: Backup;
  for (;;) {
    backup = (await call<Backup>(reader, 'GET', `/v1/backups/${segment(body.id)}`)).body;
    if (backup.outcome !== 'running' && backup.verification !== null) break;
    if (backup.outcome !== 'running' && !backup.destinations.some((d) => d.state === 'checked')) break;
    if (Date.now() > deadline) throw new CliFailure(`backup ${body.id} is still running after ${timeoutS} s`);
    await sleep(POLL_MS);
  }
  emit(flags, backup, lines([backup]));
  if (backup.outcome !== 'done' || backup.verification?.result !== 'passed') {
    throw new CliFailure(
      `backup ${backup.id}: ${backup.outcome}, verification ${backup.verification?.result ?? 'none'}`,
      {
        code: backup.errorCode ?? 'TRESOR_ERR_BACKUP_FAILED',
      },
    );
  }
}

export async function listCommand(flags: BackupListFlags): Promise<void> {
  const command = 'tresor backup list';
  const limit = flags.limit === undefined ? undefined : Number(flags.limit);
  if (limit !== undefined && (!Number.isSafeInteger(limit) || limit < 1 || limit > 1000))
    throw usageError(command, '--limit must be a whole number from 1 to 1000');
  const conn = connect(command, flags);
  const query = limit === undefined ? '' : `?limit=${limit}`;
  const { body } = await call<{ backups: Backup[] }>(conn, 'GET', `/v1/backups${query}`);
  emit(flags, body, body.backups.length === 0 ? 'no backups' : lines(body.backups));
}

export async function verifyCommand(id: string, flags: BackupVerifyFlags): Promise<void> {
  const command = 'tresor backup verify';
  const timeoutS = flags.timeout === undefined ? 3600 : Number(flags.timeout);
  if (!Number.isSafeInteger(timeoutS) || timeoutS < 1)
    throw usageError(command, '--timeout must be a whole number of seconds');
  const conn = connect(command, flags);
  const { body: started } = await call<{ id: string; requestedAt: string }>(
    conn,
    'POST',
    `/v1/backups/${segment(id)}/verify`,
  );
  if (flags.wait === false) {
    emit(flags, started, `verification of ${started.id} started (tresor backup list shows its result)`);
    return;
  }
  // The verification runs in the server (a trial restore of a large backup takes a while): poll.
  const reader =
    flags.readTokenFile === undefined ? conn : connect(command, { ...flags, tokenFile: flags.readTokenFile });
  const deadline = Date.now() + timeoutS * 1000;
  let body: Backup;
  for (;;) {
    body = (await call<Backup>(reader, 'GET', `/v1/backups/${segment(started.id)}`)).body;
    if (body.verifying !== true) break;
    if (Date.now() > deadline)
      throw new CliFailure(`backup ${started.id} is still being verified after ${timeoutS} s`);
    await sleep(POLL_MS);
  }
  if (body.verification === null || body.verification.at < started.requestedAt) {
    throw new CliFailure(
      `the verification of backup ${started.id} ended without a result (see the server log)`,
    );
  }
  emit(flags, body, lines([body]));
  if (body.verification?.result !== 'passed') {
    const failed = body.destinations.find((d) => d.verification?.result === 'failed');
    throw new CliFailure(`backup ${body.id} failed verification at ${failed?.name ?? 'a destination'}`, {
      code: failed?.verification?.code ?? 'TRESOR_ERR_BACKUP_INVALID',
    });
  }
}

/** The table `tresor backup list` prints. */
function lines(backups: readonly Backup[]): string {
  return table(
    ['ID', 'STARTED', 'SIZE', 'OUTCOME', 'DESTINATIONS', 'VERIFIED'],
    backups.map((b) => [
      b.id,
      b.startedAt,
      b.storedBytes === null ? '-' : size(b.storedBytes),
      b.outcome,
      b.destinations.map(copyText).join(' '),
      b.verifying === true
        ? 'verifying now'
        : b.verification
          ? `${b.verification.result} ${b.verification.at}`
          : '-',
    ]),
  );
}

function copyText(c: Copy): string {
  const state = c.state === 'checked' ? 'read back' : c.state;
  const failed = c.state === 'failed' && c.error ? ` (${c.error.code}, ${c.attempts} attempts)` : '';
  const unverified =
    c.verification?.result === 'failed' ? ` (verification failed: ${c.verification.code ?? 'error'})` : '';
  return `${c.name}:${state}${failed}${unverified}`;
}

function size(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 ** 2) return `${(bytes / 1024).toFixed(1)} KiB`;
  if (bytes < 1024 ** 3) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
  return `${(bytes / 1024 ** 3).toFixed(1)} GiB`;
}
