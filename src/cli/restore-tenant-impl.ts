/**
 * What `tresor restore --tenant <id>` does (restore.ts declares it): asks the running server to
 * restore one tenant from a backup (POST /v1/tenants/:id/restore, a session with a fresh second
 * factor: --code when the server asks), then follows the restore (GET …/restores/:id) until it is
 * done or failed, each request within the client's deadline and the whole within --timeout, so a
 * large tenant never makes a single request time out. The work and every check are the server's
 * (src/backup/tenant-restore.ts).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { isBackupId } from '../objects/backup-id.ts';
import { CliFailure, type ConnectionFlags, call, connect } from './api-client.ts';
import { usageError } from './io.ts';
import { emit, segment } from './noun-output.ts';

const COMMAND = 'tresor restore --tenant';
const POLL_MS = 500;
const TENANT_ID = /^ten_[A-Za-z0-9_-]{1,60}$/;
const DESTINATION_NAME = /^[a-z0-9][a-z0-9-]{0,31}$/;

export interface TenantRestoreFlags extends ConnectionFlags {
  tenant: string;
  backup?: string;
  from?: string;
  timeout?: string;
  json?: boolean;
}

interface Restore {
  id: string;
  tenant: string;
  backupId: string;
  destination: string;
  state: 'running' | 'done' | 'failed';
  result: { backupCreatedAt: string; records: number; collections: number; checkpointSize: number } | null;
  error: { code: string; message: string } | null;
}

export async function restoreTenantCommand(flags: TenantRestoreFlags): Promise<void> {
  if (!TENANT_ID.test(flags.tenant)) throw usageError(COMMAND, '--tenant is not a tenant id (ten_…)');
  if (flags.backup !== undefined && !isBackupId(flags.backup))
    throw usageError(COMMAND, '--backup is not a backup id (YYYYMMDDTHHMMSSZ-<8 hex>)');
  if (flags.from !== undefined && !DESTINATION_NAME.test(flags.from))
    throw usageError(
      COMMAND,
      "--from names one of the server's configured backup destinations (e.g. offsite)",
    );
  const timeoutS = flags.timeout === undefined ? 3600 : Number(flags.timeout);
  if (!Number.isSafeInteger(timeoutS) || timeoutS < 1)
    throw usageError(COMMAND, '--timeout must be a whole number of seconds');
  const conn = connect(COMMAND, flags);
  const tenant = segment(flags.tenant);
  const started = (
    await call<Restore>(conn, 'POST', `/v1/tenants/${tenant}/restore`, {
      ...(flags.backup === undefined ? {} : { backupId: flags.backup }),
      ...(flags.from === undefined ? {} : { destination: flags.from }),
    })
  ).body;
  const deadline = Date.now() + timeoutS * 1000;
  let restore = started;
  while (restore.state === 'running') {
    if (Date.now() > deadline)
      throw new CliFailure(
        `restore ${started.id} of tenant ${started.tenant} is still running after ${timeoutS} s (it goes on in the server)`,
      );
    await sleep(POLL_MS);
    restore = (await call<Restore>(conn, 'GET', `/v1/tenants/${tenant}/restores/${segment(started.id)}`))
      .body;
  }
  if (restore.state === 'failed') {
    const error = restore.error ?? { code: 'TRESOR_ERR_INTERNAL', message: 'the restore failed' };
    if (flags.json) emit(flags, restore, '');
    throw new CliFailure(error.message, { code: error.code });
  }
  const r = restore.result;
  emit(
    flags,
    restore,
    [
      `restored tenant ${restore.tenant} from backup ${restore.backupId}${r ? ` (taken ${r.backupCreatedAt})` : ''} at ${restore.destination}`,
      ...(r
        ? [
            `  ${r.records} records in ${r.collections} collections; records written since the backup are gone, the audit log keeps everything`,
            `  signature, every digest, the audit checkpoint (size ${r.checkpointSize}, a prefix of the live log) and the restored store: ok`,
          ]
        : []),
    ].join('\n'),
  );
}
