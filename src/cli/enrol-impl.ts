/** What `tresor enrol` and `tresor enrol confirm` do (enrol.ts declares them). */
import { call, checkCode, connect } from './api-client.ts';
import { out, readSecretFile, usageError, writeSecretFile } from './io.ts';

const COMMAND = 'tresor enrol';
const TOKEN = /^[A-Za-z0-9_-]{43}$/;
const FACTOR_ID = /^fac_[0-9a-f]{24}$/;

interface LinkFlags {
  url?: string;
  caFile?: string;
  profile?: string;
  json?: boolean;
  linkFile: string;
}

export interface EnrolFlags extends LinkFlags {
  passwordFile: string;
  totpSecretFile: string;
  otpauthUri?: boolean;
}

export interface EnrolConfirmFlags extends LinkFlags {
  factorId: string;
  code: string;
  recoveryCodesFile?: string;
}

/** The enrolment token of a link (`…#enrol=<token>`) or a bare token, and the link's origin. */
function enrolmentOf(flags: LinkFlags): { token: string; origin: string | undefined } {
  const text = readSecretFile(COMMAND, '--link-file', flags.linkFile).trim();
  const at = text.indexOf('#enrol=');
  const token = at >= 0 ? text.slice(at + '#enrol='.length) : text;
  if (!TOKEN.test(token))
    throw usageError(COMMAND, '--link-file holds no enrolment link (…/signin#enrol=<token>) or token');
  let origin: string | undefined;
  if (at >= 0) {
    try {
      origin = new URL(text.slice(0, at)).origin;
    } catch {
      throw usageError(COMMAND, 'the enrolment link in --link-file is not a URL');
    }
  }
  return { token, origin };
}

function connection(flags: LinkFlags, origin: string | undefined) {
  return connect(COMMAND, flags, {
    credential: 'none',
    ...(origin !== undefined ? { fallbackUrl: origin } : {}),
  });
}

export async function enrolCommand(flags: EnrolFlags): Promise<void> {
  if (flags.linkFile === '-' && flags.passwordFile === '-')
    throw usageError(COMMAND, 'only one of --link-file and --password-file can be standard input');
  const { token, origin } = enrolmentOf(flags);
  const password = readSecretFile(COMMAND, '--password-file', flags.passwordFile);
  if (password === '') throw usageError(COMMAND, '--password-file is empty');
  const conn = connection(flags, origin);
  await call(conn, 'POST', '/v1/enrolment/password', { enrolmentToken: token, password });
  const begun = await call<{ factorId: string; secret: string; uri: string }>(
    conn,
    'POST',
    '/v1/enrolment/totp',
    {
      enrolmentToken: token,
    },
  );
  writeSecretFile(flags.totpSecretFile, begun.body.secret);
  const uri = flags.otpauthUri ? { otpauthUri: begun.body.uri } : {};
  if (flags.json) {
    out({ factorId: begun.body.factorId, totpSecretFile: flags.totpSecretFile, ...uri }, true);
    return;
  }
  out(
    [
      `password set; TOTP begun: factor ${begun.body.factorId}, secret written to ${flags.totpSecretFile} (mode 0600)`,
      ...(flags.otpauthUri ? [`otpauth URI (a secret): ${begun.body.uri}`] : []),
      `next: tresor enrol confirm --link-file ${flags.linkFile} --factor-id ${begun.body.factorId} --code <current TOTP code>`,
    ].join('\n'),
    false,
  );
}

export async function confirmCommand(flags: EnrolConfirmFlags): Promise<void> {
  const command = `${COMMAND} confirm`;
  if (!FACTOR_ID.test(flags.factorId))
    throw usageError(command, '--factor-id must be fac_ and 24 hex digits');
  const code = checkCode(command, flags.code) ?? '';
  const { token, origin } = enrolmentOf(flags);
  const conn = connection(flags, origin);
  const done = await call<{ enrolmentComplete: boolean; recoveryCodes?: string[] }>(
    conn,
    'POST',
    '/v1/enrolment/totp/confirm',
    { enrolmentToken: token, factorId: flags.factorId, code },
  );
  const codes = done.body.recoveryCodes ?? [];
  if (flags.recoveryCodesFile !== undefined && codes.length > 0)
    writeSecretFile(flags.recoveryCodesFile, codes.join('\n'));
  const shown = flags.recoveryCodesFile === undefined ? { recoveryCodes: codes } : {};
  if (flags.json) {
    out({ enrolmentComplete: done.body.enrolmentComplete, ...shown }, true);
    return;
  }
  out(
    [
      done.body.enrolmentComplete ? 'enrolment complete: sign in with tresor login' : 'TOTP confirmed',
      ...(codes.length === 0
        ? []
        : flags.recoveryCodesFile !== undefined
          ? [`recovery codes written to ${flags.recoveryCodesFile} (mode 0600)`]
          : ['recovery codes (shown once; keep them offline):', ...codes]),
    ].join('\n'),
    false,
  );
}
