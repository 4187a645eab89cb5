/**
 * TEST-ONLY. Records each argon2 verification the code under test runs, by the parameters of the
 * hash it verified against (never the hash, salt or password). Import it before anything that
 * imports @node-rs/argon2 (as a bare `import '…/argon2-calls.ts'` first in the test file): the ESM
 * view of that CommonJS package copies its exports when it is first imported.
 */
import { createRequire } from 'node:module';

type Verify = (hash: string, ...rest: unknown[]) => Promise<boolean>;

const argon2 = createRequire(import.meta.url)('@node-rs/argon2') as { verify: Verify };
const original = argon2.verify;
const seen: string[] = [];

/** `argon2id$v=19$m=19456,t=2,p=1` from a PHC string: the algorithm and its cost, nothing else. */
function parametersOf(hash: string): string {
  return hash.split('$').slice(1, 4).join('$');
}

const counting: Verify = (hash, ...rest) => {
  seen.push(parametersOf(hash));
  return original(hash, ...rest);
};
argon2.verify = counting;

/** The verifications since the last call, each as the parameters of the hash it used. */
export function takeArgon2Verifications(): string[] {
  return seen.splice(0);
}

/** True when the code under test sees the counting verify (the import order was right). */
export async function argon2Counted(): Promise<boolean> {
  return (await import('@node-rs/argon2')).verify === (counting as unknown);
}
