/**
 * Free space under the audit log, watched so a full disk is never a surprise outage. HashiCorp
 * Vault's users report that a full audit disk silently stops their service; Tresor instead:
 *
 *   ok ──free < warnBytes──▶ low (warning logged and audited, requests still served)
 *   low ──free < reserveBytes / 4──▶ critical: the reserve file is deleted, so the warning, the
 *       system's own events and the 503 refusals can still be recorded in the space it held;
 *       audited requests answer 503 (health condition) instead of failing at random
 *   critical ──free ≥ 2 × reserveBytes──▶ the reserve is written again, requests are served
 *
 * The reserve is real zeros written and fsynced (a sparse file would hold no space). Hysteresis
 * (2 ×) keeps the watch from flapping at the edge.
 */
import { constants } from 'node:fs';
import { open, statfs, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { AuditCondition } from './audit-log.ts';

export type DiskState = 'ok' | 'low' | 'critical';

export interface DiskWatchLogger {
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface DiskWatchOptions {
  dir: string;
  warnBytes: number;
  reserveBytes: number;
  intervalMs?: number;
  logger: DiskWatchLogger;
  /** Records a state change in the audit log (as the system actor); best effort. */
  record?(
    action: 'audit.disk.low' | 'audit.disk.critical' | 'audit.disk.ok',
    freeBytes: number,
  ): Promise<void>;
}

export interface DiskWatch extends AuditCondition {
  start(): Promise<void>;
  /** Checks now (also runs every intervalMs). */
  check(): string | null;
  poll(): Promise<DiskState>;
  status(): { state: DiskState; freeBytes: number; reserveHeld: boolean };
  close(): Promise<void>;
}

export const RESERVE_FILE = 'audit-reserve';
const CHUNK = 1024 * 1024;

export function createDiskWatch(options: DiskWatchOptions): DiskWatch {
  const reservePath = join(options.dir, RESERVE_FILE);
  const intervalMs = options.intervalMs ?? 1000;
  let state: DiskState = 'ok';
  let freeBytes = Number.POSITIVE_INFINITY;
  let reserveHeld = false;
  let timer: NodeJS.Timeout | undefined;
  let polling: Promise<DiskState> | undefined;

  async function free(): Promise<number> {
    const s = await statfs(options.dir);
    return s.bavail * s.bsize;
  }

  async function holdReserve(): Promise<boolean> {
    if (options.reserveBytes === 0) return true;
    const handle = await open(reservePath, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC, 0o600);
    try {
      const zeros = Buffer.alloc(Math.min(CHUNK, options.reserveBytes));
      for (let written = 0; written < options.reserveBytes; written += zeros.length) {
        await handle.write(zeros, 0, Math.min(zeros.length, options.reserveBytes - written));
      }
      await handle.sync();
      return true;
    } catch {
      await handle.close().catch(() => undefined);
      await unlink(reservePath).catch(() => undefined);
      return false;
    } finally {
      await handle.close().catch(() => undefined);
    }
  }

  async function release(): Promise<void> {
    await unlink(reservePath).catch(() => undefined);
    reserveHeld = false;
  }

  async function transition(next: DiskState): Promise<void> {
    if (next === state) return;
    const previous = state;
    state = next;
    const details = { freeBytes, warnBytes: options.warnBytes, reserveBytes: options.reserveBytes };
    if (next === 'critical')
      options.logger.error(details, 'audit disk almost full: reserve released, audited requests answer 503');
    else if (next === 'low')
      options.logger.warn(details, 'audit disk space low: free space before requests fail');
    else options.logger.warn({ ...details, previous }, 'audit disk space back to normal');
    const action =
      next === 'ok' ? 'audit.disk.ok' : next === 'low' ? 'audit.disk.low' : 'audit.disk.critical';
    await options.record?.(action, freeBytes).catch(() => undefined);
  }

  async function pollNow(): Promise<DiskState> {
    freeBytes = await free().catch(() => 0);
    if (state === 'critical') {
      if (freeBytes >= 2 * options.reserveBytes) {
        reserveHeld = await holdReserve();
        if (reserveHeld) {
          freeBytes = await free().catch(() => 0);
          await transition(freeBytes < options.warnBytes ? 'low' : 'ok');
        }
      }
      return state;
    }
    if (freeBytes < options.reserveBytes / 4 || (!reserveHeld && options.reserveBytes > 0)) {
      if (!reserveHeld && freeBytes >= 2 * options.reserveBytes) {
        reserveHeld = await holdReserve();
        freeBytes = await free().catch(() => 0);
        if (reserveHeld && freeBytes >= options.reserveBytes / 4) {
          await transition(freeBytes < options.warnBytes ? 'low' : 'ok');
          return state;
        }
      }
      await release();
      freeBytes = await free().catch(() => 0);
      await transition('critical');
      return state;
    }
    await transition(freeBytes < options.warnBytes ? 'low' : 'ok');
    return state;
  }

  function poll(): Promise<DiskState> {
    polling ??= pollNow().finally(() => {
      polling = undefined;
    });
    return polling;
  }

  return {
    name: 'disk-space',
    async start() {
      await poll();
      timer = setInterval(() => void poll(), intervalMs);
      timer.unref();
    },
    check() {
      return state === 'critical'
        ? `the audit log's filesystem is almost full (${freeBytes} bytes free): audited requests are refused until space returns`
        : null;
    },
    poll,
    status: () => ({ state, freeBytes, reserveHeld }),
    async close() {
      if (timer) clearInterval(timer);
      await polling?.catch(() => undefined);
    },
  };
}
