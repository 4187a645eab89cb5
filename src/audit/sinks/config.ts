/**
 * The `audit.sinks` configuration: a JSON array of sinks, checked field by field at start so a
 * typo fails fast with the field's path instead of silently dropping an audit copy.
 *
 *   [{"kind": "file",    "name": "siem-file", "path": "/var/log/tresor/audit.jsonl", "maxBytes": 104857600, "keep": 10},
 *    {"kind": "syslog",  "name": "rsyslog", "host": "logs.internal", "port": 6514, "caFile": "/etc/tresor/logs-ca.pem"},
 *    {"kind": "webhook", "name": "siem", "url": "https://siem.example/hooks/tresor", "secretFile": "/run/secrets/siem-hmac"}]
 *
 * Secrets come only from files (`secretFile`, `keyFile`), never inline, so `tresor config show`
 * and the process list never hold them (a `*_FILE` variant for every secret). A secret
 * file holds the key's bytes; one trailing newline is ignored. Unknown fields are refused.
 */
import { readFileSync } from 'node:fs';
import { createJsonlFileSink } from './jsonl-file.ts';
import { createSyslogSink } from './syslog.ts';
import { type AuditSink, SINK_NAME_PATTERN } from './types.ts';
import { createWebhookSink, MIN_SECRET_BYTES } from './webhook.ts';

export interface FileSinkConfig {
  kind: 'file';
  name: string;
  path: string;
  maxBytes: number;
  keep: number;
}

export interface SyslogSinkConfig {
  kind: 'syslog';
  name: string;
  host: string;
  port: number;
  caFile: string;
  certFile?: string;
  keyFile?: string;
  servername?: string;
  appName?: string;
  hostname?: string;
  facility?: number;
}

export interface WebhookSinkConfig {
  kind: 'webhook';
  name: string;
  url: string;
  secretFile: string;
  caFile?: string;
  timeoutMs?: number;
}

export type SinkConfig = FileSinkConfig | SyslogSinkConfig | WebhookSinkConfig;

const INLINE_SECRETS = new Set(['secret', 'key', 'password', 'token']);

const FIELDS: Record<SinkConfig['kind'], { required: string[]; optional: string[] }> = {
  file: { required: ['kind', 'name', 'path', 'maxBytes', 'keep'], optional: [] },
  syslog: {
    required: ['kind', 'name', 'host', 'port', 'caFile'],
    optional: ['certFile', 'keyFile', 'servername', 'appName', 'hostname', 'facility'],
  },
  webhook: { required: ['kind', 'name', 'url', 'secretFile'], optional: ['caFile', 'timeoutMs'] },
};

/** Validates `json` (the parsed config value at `where`, e.g. `config.json: audit.sinks`). */
export function parseSinkConfig(json: unknown, where: string): SinkConfig[] {
  if (!Array.isArray(json)) throw new Error(`${where}: must be an array of sinks`);
  const names = new Set<string>();
  return json.map((item: unknown, i) => parseOneSink(item, `${where}[${i}]`, names));
}

function parseOneSink(item: unknown, at: string, names: Set<string>): SinkConfig {
  if (typeof item !== 'object' || item === null || Array.isArray(item))
    throw new Error(`${at}: must be an object`);
  const raw = item as Record<string, unknown>;
  const kind = raw.kind;
  if (kind !== 'file' && kind !== 'syslog' && kind !== 'webhook') {
    throw new Error(`${at}.kind: must be "file", "syslog" or "webhook"`);
  }
  const { required, optional } = FIELDS[kind];
  for (const key of Object.keys(raw)) {
    if (INLINE_SECRETS.has(key)) {
      throw new Error(`${at}.${key}: secrets are never inline; put it in a file and name it in ${key}File`);
    }
    if (!required.includes(key) && !optional.includes(key)) throw new Error(`${at}.${key}: unknown field`);
  }
  for (const key of required) {
    if (raw[key] === undefined) throw new Error(`${at}.${key}: required`);
  }
  const name = raw.name;
  if (typeof name !== 'string' || !SINK_NAME_PATTERN.test(name)) {
    throw new Error(`${at}.name: must match [a-z0-9-]{1,32}`);
  }
  if (names.has(name)) throw new Error(`${at}.name: "${name}" is used by another sink`);
  names.add(name);
  const field = new FieldReader(raw, at);

  switch (kind) {
    case 'file':
      return {
        kind,
        name,
        path: field.string('path'),
        maxBytes: field.integer('maxBytes', 1, Number.MAX_SAFE_INTEGER),
        keep: field.integer('keep', 1, 1000),
      };
    case 'syslog': {
      const config: SyslogSinkConfig = {
        kind,
        name,
        host: field.string('host'),
        port: field.integer('port', 1, 65_535),
        caFile: field.string('caFile'),
      };
      if ((raw.certFile === undefined) !== (raw.keyFile === undefined)) {
        throw new Error(
          `${at}.${raw.certFile === undefined ? 'certFile' : 'keyFile'}: certFile and keyFile go together`,
        );
      }
      if (raw.certFile !== undefined) config.certFile = field.string('certFile');
      if (raw.keyFile !== undefined) config.keyFile = field.string('keyFile');
      if (raw.servername !== undefined) config.servername = field.string('servername');
      if (raw.appName !== undefined) config.appName = field.printable('appName', 48);
      if (raw.hostname !== undefined) config.hostname = field.printable('hostname', 255);
      if (raw.facility !== undefined) config.facility = field.integer('facility', 0, 23);
      return config;
    }
    case 'webhook': {
      const url = field.string('url');
      let parsed: URL;
      try {
        parsed = new URL(url);
      } catch {
        throw new Error(`${at}.url: not a valid URL`);
      }
      if (parsed.protocol !== 'https:') throw new Error(`${at}.url: must be an https: URL`);
      if (parsed.username !== '' || parsed.password !== '') {
        throw new Error(`${at}.url: must not carry credentials; the HMAC secret goes in secretFile`);
      }
      const config: WebhookSinkConfig = { kind, name, url, secretFile: field.string('secretFile') };
      if (raw.caFile !== undefined) config.caFile = field.string('caFile');
      if (raw.timeoutMs !== undefined) config.timeoutMs = field.integer('timeoutMs', 1, 600_000);
      return config;
    }
  }
}

/** Builds the sinks, reading their certificate and secret files now, so a missing file fails at start. */
export function createSinks(configs: readonly SinkConfig[]): AuditSink[] {
  return configs.map(createSink);
}

function createSink(config: SinkConfig): AuditSink {
  switch (config.kind) {
    case 'file':
      return createJsonlFileSink(config);
    case 'syslog':
      return createSyslogSink({
        name: config.name,
        host: config.host,
        port: config.port,
        ca: readConfigFile(config, 'caFile', config.caFile),
        ...(config.certFile !== undefined && { cert: readConfigFile(config, 'certFile', config.certFile) }),
        ...(config.keyFile !== undefined && { key: readConfigFile(config, 'keyFile', config.keyFile) }),
        ...(config.servername !== undefined && { servername: config.servername }),
        ...(config.appName !== undefined && { appName: config.appName }),
        ...(config.hostname !== undefined && { hostname: config.hostname }),
        ...(config.facility !== undefined && { facility: config.facility }),
      });
    case 'webhook': {
      const secret = readSecretFile(config);
      try {
        return createWebhookSink({
          name: config.name,
          url: config.url,
          secret,
          ...(config.caFile !== undefined && { ca: readConfigFile(config, 'caFile', config.caFile) }),
          ...(config.timeoutMs !== undefined && { timeoutMs: config.timeoutMs }),
        });
      } finally {
        secret.fill(0); // the sink keeps its own copy
      }
    }
  }
}

function readConfigFile(config: SinkConfig, field: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'error';
    throw new Error(`sink ${config.name}: ${field} ${path} cannot be read (${code})`);
  }
}

function readSecretFile(config: WebhookSinkConfig): Buffer {
  const bytes = readConfigFile(config, 'secretFile', config.secretFile);
  let end = bytes.length;
  if (end > 0 && bytes[end - 1] === 0x0a) end -= 1;
  if (end > 0 && bytes[end - 1] === 0x0d) end -= 1;
  const secret = Buffer.from(bytes.subarray(0, end));
  bytes.fill(0);
  if (secret.length < MIN_SECRET_BYTES) {
    secret.fill(0);
    throw new Error(`sink ${config.name}: secretFile must hold at least ${MIN_SECRET_BYTES} bytes`);
  }
  return secret;
}

/** Typed access to one config object's fields, with errors that name the field's path. */
class FieldReader {
  constructor(
    private readonly raw: Record<string, unknown>,
    private readonly at: string,
  ) {}

  string(key: string): string {
    const value = this.raw[key];
    if (typeof value !== 'string' || value.length === 0)
      throw new Error(`${this.at}.${key}: must be a non-empty string`);
    return value;
  }

  integer(key: string, min: number, max: number): number {
    const value = this.raw[key];
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      throw new Error(`${this.at}.${key}: must be an integer from ${min} to ${max}`);
    }
    return value;
  }

  printable(key: string, maxLength: number): string {
    const value = this.string(key);
    if (value.length > maxLength || !/^[\x21-\x7e]+$/.test(value) || value === '-') {
      throw new Error(
        `${this.at}.${key}: must be 1-${maxLength} printable US-ASCII characters (RFC 5424 §6.2)`,
      );
    }
    return value;
  }
}
