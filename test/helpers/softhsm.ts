/**
 * Throwaway SoftHSM2 tokens for tests. SoftHSM reads SOFTHSM2_CONF when the module is initialised,
 * so the first token of a process writes a softhsm2.conf pointing at a temporary token folder and sets
 * the variable before any test loads the library. Tokens made while the module is initialised become
 * visible at its next C_Initialize (the provider finalises the module when its last user seals).
 *
 * `withTokenSession` talks to the token through raw pkcs11js, independent of the provider under test,
 * so what it observes about key objects is the token's word, not ours.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as Pkcs11Js from 'pkcs11js';

export const SOFTHSM_LIBRARY = '/usr/lib/softhsm/libsofthsm2.so';

export interface SoftHsmToken {
  library: string;
  tokenLabel: string;
  pin: string;
  soPin: string;
}

let root: string | undefined;

function ensureConfig(): string {
  if (root) return root;
  if (!existsSync(SOFTHSM_LIBRARY)) {
    throw new Error(`SoftHSM2 is not installed (${SOFTHSM_LIBRARY} missing): apt-get install softhsm2`);
  }
  root = mkdtempSync(join(tmpdir(), 'tresor-softhsm-'));
  const tokenDir = join(root, 'tokens');
  mkdirSync(tokenDir);
  const conf = join(root, 'softhsm2.conf');
  writeFileSync(
    conf,
    `directories.tokendir = ${tokenDir}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`,
  );
  process.env.SOFTHSM2_CONF = conf;
  return root;
}

/** Initialises a fresh token in the next free slot, with random PINs. */
export function createSoftHsmToken(labelPrefix = 'tresor-test'): SoftHsmToken {
  ensureConfig();
  const token: SoftHsmToken = {
    library: SOFTHSM_LIBRARY,
    tokenLabel: `${labelPrefix}-${randomBytes(4).toString('hex')}`,
    pin: randomBytes(8).toString('hex'),
    soPin: randomBytes(8).toString('hex'),
  };
  execFileSync(
    'softhsm2-util',
    ['--init-token', '--free', '--label', token.tokenLabel, '--so-pin', token.soPin, '--pin', token.pin],
    { env: process.env, stdio: 'pipe' },
  );
  return token;
}

/** Deletes every token this process made. Call once, after the last provider has sealed. */
export function removeSoftHsmTokens(): void {
  if (root) rmSync(root, { recursive: true, force: true });
  root = undefined;
}

export interface TokenSession {
  ck: typeof Pkcs11Js;
  lib: Pkcs11Js.PKCS11;
  session: Pkcs11Js.Handle;
}

/**
 * Runs `fn` in a logged-in session of its own module instance. The provider under test must be
 * sealed meanwhile: PKCS#11 allows one initialisation and one login per token per process.
 */
export async function withTokenSession<T>(token: SoftHsmToken, fn: (s: TokenSession) => T): Promise<T> {
  const ck = (await import('pkcs11js')).default;
  const lib = new ck.PKCS11();
  lib.load(token.library);
  lib.C_Initialize();
  try {
    const slot = lib
      .C_GetSlotList(true)
      .find((s) => lib.C_GetTokenInfo(s).label.trimEnd() === token.tokenLabel);
    if (!slot) throw new Error(`token ${token.tokenLabel} not found`);
    const session = lib.C_OpenSession(slot, ck.CKF_SERIAL_SESSION | ck.CKF_RW_SESSION);
    lib.C_Login(session, ck.CKU_USER, token.pin);
    try {
      return fn({ ck, lib, session });
    } finally {
      lib.C_Logout(session);
      lib.C_CloseSession(session);
    }
  } finally {
    lib.C_Finalize();
    lib.close();
  }
}

/** Handles of the secret keys on the token whose label is `label`. */
export function findSecretKeys({ ck, lib, session }: TokenSession, label: string): Pkcs11Js.Handle[] {
  lib.C_FindObjectsInit(session, [
    { type: ck.CKA_CLASS, value: ck.CKO_SECRET_KEY },
    { type: ck.CKA_LABEL, value: label },
  ]);
  try {
    return lib.C_FindObjects(session, 100);
  } finally {
    lib.C_FindObjectsFinal(session);
  }
}
