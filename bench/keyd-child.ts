/**
 * The real keyd, as its own process, for `npm run bench`: runKeyd with the config the bench passes
 * as JSON in argv (paths only — no secret travels on the command line; the dev-file provider
 * unseals from its folder, the passphrase provider from its passphrase file). Prints its bound address as one JSON line on stdout once listening.
 *
 * It stops on SIGTERM (runKeyd's handler) and also when its stdin ends, i.e. when the bench that
 * holds the other end exits or crashes, so no keyd outlives a bench run.
 */
import type { KeydConfig } from '../src/keyd/config.ts';
import { runKeyd } from '../src/keyd/daemon.ts';

const config = JSON.parse(process.argv[2] ?? '{}') as KeydConfig;
const handle = await runKeyd(config);
process.stdout.write(`${JSON.stringify(handle.address)}\n`);

process.stdin.on('end', () => void handle.close());
process.stdin.resume();
await handle.closed;
process.exit(0);
