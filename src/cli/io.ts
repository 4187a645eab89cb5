/**
 * CLI plumbing: data on stdout, diagnostics on stderr, secrets from files or stdin (never argv),
 * secrets a command made written 0600, NO_COLOR honoured.
 */
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { CommanderError } from 'commander';
import { writeFileAtomic } from '../keyd/root/atomic-file.ts';

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

/** A usage error of `command` (exit code 2): said on stderr here, as commander does for its own. */
export function usageError(command: string, message: string): CommanderError {
  warn(`${command}: ${message}`);
  return new CommanderError(2, 'commander.tresorUsage', `${command}: ${message}`);
}

/**
 * A secret from a file (a token, a password, an enrolment link): its text without the trailing
 * newline; `-` reads standard input. Errors name the flag and the errno, never the contents.
 */
export function readSecretFile(command: string, flag: string, path: string): string {
  let text: string;
  try {
    text = readFileSync(path === '-' ? 0 : path, 'utf8');
  } catch (err) {
    throw usageError(command, `cannot read ${flag}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  return text.replace(/\r?\n$/, '');
}

/** Writes a secret a command made (API key, token, enrolment link…) to a new 0600 file, atomically. */
export function writeSecretFile(path: string, text: string): void {
  writeFileAtomic(path, text.endsWith('\n') ? text : `${text}\n`, 0o600);
}
