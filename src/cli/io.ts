/** CLI plumbing: data on stdout, diagnostics on stderr, secrets from stdin (never argv), NO_COLOR honoured. */
import { createInterface } from 'node:readline';

export const useColor = !process.env.NO_COLOR && process.stderr.isTTY === true;

export function warn(text: string): void {
  process.stderr.write(useColor ? `\x1b[1;31m${text}\x1b[0m\n` : `${text}\n`);
}

export function info(text: string): void {
  process.stderr.write(`${text}\n`);
}

export function out(value: unknown, json: boolean): void {
  process.stdout.write(json ? `${JSON.stringify(value)}\n` : `${String(value)}\n`);
}

/**
 * Reads one secret line. On a terminal it prompts on stderr and does not echo; otherwise it reads
 * the next line of standard input, so `tresor keyd unseal < share.txt` works in scripts.
 */
export async function readSecret(prompt: string): Promise<string> {
  const input = process.stdin;
  if (input.isTTY) {
    process.stderr.write(prompt);
    input.setRawMode(true);
    return new Promise((resolve, reject) => {
      let value = '';
      const onData = (chunk: Buffer) => {
        for (const ch of chunk.toString('utf8')) {
          if (ch === '\r' || ch === '\n') {
            input.setRawMode(false);
            input.off('data', onData);
            input.pause();
            process.stderr.write('\n');
            resolve(value);
            return;
          }
          if (ch === '\u0003') {
            input.setRawMode(false);
            reject(new Error('cancelled'));
            return;
          }
          if (ch === '\u007f') value = value.slice(0, -1);
          else value += ch;
        }
      };
      input.on('data', onData);
      input.resume();
    });
  }
  const rl = createInterface({ input, terminal: false });
  for await (const line of rl) {
    rl.close();
    return line.replace(/\r$/, '');
  }
  return '';
}
