/**
 * How `tresor audit verify` and `tresor audit export` reach the archived part of the log (entries
 * below the archived end, in sealed segments): the backup destinations and keyd as the server's
 * config says (TRESOR_CONFIG or --config, and its TRESOR_* variables), keyd's socket overridable
 * with --keyd-socket, as `tresor restore` does. Nothing is connected until the archive is asked for:
 * a log with nothing archived is verified and exported without keyd, as before.
 */
import { resolve } from 'node:path';
import type { AuditArchive } from '../audit/archived-segments.ts';
import { resolveServerConfig } from '../config/server-config.ts';
import { createKeydClient, type KeydClient } from '../keyd/client.ts';
import { configuredDestinations } from '../objects/configured-destinations.ts';
import { keydTargets } from '../server/keyd-targets.ts';

export interface ArchiveFlags {
  config?: string;
  keydSocket?: string;
}

export interface CliArchive {
  /** The destinations and keyd; throws with a message saying what is missing or unreachable. */
  open(origin: string): Promise<AuditArchive>;
  close(): Promise<void>;
}

export function cliArchive(flags: ArchiveFlags, dataDir: string): CliArchive {
  let keys: KeydClient | undefined;
  return {
    async open(origin) {
      const config = resolveServerConfig({
        dataDir,
        ...(flags.config === undefined ? {} : { config: flags.config }),
      });
      const destinations = configuredDestinations(config.backup.destinations).map((d) => d.destination);
      keys = createKeydClient({
        connect:
          flags.keydSocket === undefined
            ? keydTargets(config)
            : { kind: 'unix', path: resolve(flags.keydSocket) },
        clientName: 'tresor-audit',
        retries: 1,
      });
      const key = await keys.call('publicKey', { purpose: 'backup-manifest' }).catch((error: unknown) => {
        throw new Error(`keyd is not reachable to open the segments: ${(error as Error).message}`);
      });
      return {
        destinations,
        keys,
        key: { name: key.name, publicKey: key.publicKey },
        origin,
      };
    },
    async close() {
      await keys?.close();
    },
  };
}
