/** What `tresor init` does (init.ts declares it); the work itself is src/server/init-deployment.ts. */
import { resolveServerConfig, type ServerConfig } from '../config/server-config.ts';
import { TresorError } from '../errors.ts';
import { initDeployment } from '../server/init-deployment.ts';
import { out, usageError, writeSecretFile } from './io.ts';

const COMMAND = 'tresor init';

export interface InitFlags {
  config?: string;
  dataDir?: string;
  email: string;
  auditOrigin?: string;
  outFile?: string;
  json?: boolean;
}

function serverConfig(flags: InitFlags): ServerConfig {
  try {
    return resolveServerConfig({
      ...(flags.config !== undefined ? { config: flags.config } : {}),
      ...(flags.dataDir !== undefined ? { dataDir: flags.dataDir } : {}),
    });
  } catch (err) {
    throw usageError(COMMAND, (err as Error).message);
  }
}

/** C2SP tlog-checkpoint: the origin is printable ASCII without spaces or `+` (the note key name rules). */
const ORIGIN = /^[\x21-\x2a\x2c-\x7e]{1,255}$/;

export async function initCommand(flags: InitFlags): Promise<void> {
  if (flags.auditOrigin !== undefined && !ORIGIN.test(flags.auditOrigin))
    throw usageError(
      COMMAND,
      '--audit-origin must be printable ASCII without spaces or +, e.g. vault.example.com/audit',
    );
  const config = serverConfig(flags);
  let done: Awaited<ReturnType<typeof initDeployment>>;
  try {
    done = await initDeployment({
      config,
      email: flags.email,
      ...(flags.auditOrigin !== undefined ? { auditOrigin: flags.auditOrigin } : {}),
    });
  } catch (err) {
    if (err instanceof TresorError && err.code === 'TRESOR_ERR_VALIDATION')
      throw usageError(COMMAND, err.message);
    throw err;
  }
  if (flags.outFile !== undefined) writeSecretFile(flags.outFile, done.enrolmentLink);
  const link = flags.outFile === undefined ? { enrolmentLink: done.enrolmentLink } : {};
  if (flags.json) {
    out(
      {
        person: done.person,
        auditOrigin: done.auditOrigin,
        ...link,
        enrolmentExpiresAt: done.enrolmentExpiresAt,
      },
      true,
    );
    return;
  }
  out(
    [
      `created operator admin ${done.person.email} (${done.person.id}); nothing works until they enrol`,
      `audit origin: ${done.auditOrigin}`,
      `one-time enrolment link, valid until ${done.enrolmentExpiresAt} (a secret: hand it over privately):`,
      flags.outFile === undefined ? done.enrolmentLink : `  written to ${flags.outFile} (mode 0600)`,
    ].join('\n'),
    false,
  );
}
