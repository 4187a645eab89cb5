/**
 * Where keyd listens, checked before anything is bound. Two channels only, because keyd guards the
 * key hierarchy: a Unix socket, or TLS 1.3 with client certificates that chain to the configured CA
 * *and* are on the allowlist. Plain TCP is not offered; a TLS config without a CA or allowlist is
 * refused, whatever the address.
 */
import { isIPv4 } from 'node:net';
import { resolve } from 'node:path';
import { normaliseFingerprint } from '../tls/fingerprint.ts';
import { KeydError } from './errors.ts';
import { CLIENT_NAME_PATTERN } from './protocol.ts';

export interface KeydAllowlistEntry {
  /** The client certificate's SHA-256 fingerprint, as Node's `fingerprint256` or plain hex (any case). */
  fingerprint256: string;
  name: string;
  role: 'admin' | 'server';
}

export type KeydListen =
  | { kind: 'unix'; path: string }
  | {
      kind: 'tls';
      host: string;
      port: number;
      cert: string | Buffer;
      key: string | Buffer;
      ca: string | Buffer;
      allowlist: KeydAllowlistEntry[];
    };

/** Validates the listen config; throws TRESOR_ERR_CONFIG_INVALID. */
export function checkListen(listen: KeydListen): KeydListen {
  const config = listen as unknown;
  if (typeof config !== 'object' || config === null) throw configInvalid('keyd needs a listen config');
  const kind = (config as { kind?: unknown }).kind;
  if (kind === 'unix') {
    const path = (config as { path?: unknown }).path;
    if (typeof path !== 'string' || path.length === 0) throw configInvalid('unix listen needs a socket path');
    return { kind: 'unix', path: resolve(path) };
  }
  if (kind !== 'tls') {
    throw configInvalid('keyd listens only on a Unix socket or with mutual TLS; plain TCP is not offered');
  }
  const tls = config as Partial<Extract<KeydListen, { kind: 'tls' }>>;
  const host = typeof tls.host === 'string' ? tls.host.replace(/^\[(.*)\]$/, '$1') : '';
  if (host.length === 0) throw configInvalid('tls listen needs a host');
  if (!Number.isInteger(tls.port) || (tls.port as number) < 0 || (tls.port as number) > 65_535) {
    throw configInvalid('tls listen needs a port 0-65535');
  }
  const mtlsComplete =
    present(tls.cert) &&
    present(tls.key) &&
    present(tls.ca) &&
    Array.isArray(tls.allowlist) &&
    tls.allowlist.length > 0;
  if (!mtlsComplete) {
    throw configInvalid(
      isLoopback(host)
        ? 'tls listen needs cert, key, ca and a non-empty client allowlist'
        : `refusing to listen on ${host} without mutual TLS (cert, key, ca and a non-empty client allowlist)`,
    );
  }
  return { ...(tls as Extract<KeydListen, { kind: 'tls' }>), host };
}

export function allowlistByFingerprint(entries: KeydAllowlistEntry[]): Map<string, KeydAllowlistEntry> {
  const map = new Map<string, KeydAllowlistEntry>();
  for (const entry of entries) {
    const fingerprint = normaliseFingerprint(
      typeof entry?.fingerprint256 === 'string' ? entry.fingerprint256 : '',
    );
    if (fingerprint === undefined)
      throw configInvalid('allowlist fingerprint256 must be a SHA-256 fingerprint (64 hex digits)');
    if (typeof entry.name !== 'string' || !CLIENT_NAME_PATTERN.test(entry.name)) {
      throw configInvalid('allowlist name must be 1-64 characters of [A-Za-z0-9._-]');
    }
    if (entry.role !== 'admin' && entry.role !== 'server')
      throw configInvalid('allowlist role must be admin or server');
    if (map.has(fingerprint))
      throw configInvalid(`allowlist names fingerprint ${fingerprint.slice(0, 16)}… twice`);
    map.set(fingerprint, { fingerprint256: fingerprint, name: entry.name, role: entry.role });
  }
  return map;
}

/** 127.0.0.0/8, ::1 (also IPv4-mapped) and localhost. */
export function isLoopback(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[(.*)\]$/, '$1');
  if (h === 'localhost' || h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
  const v4 = h.startsWith('::ffff:') ? h.slice('::ffff:'.length) : h;
  return isIPv4(v4) && v4.startsWith('127.');
}

function present(value: unknown): boolean {
  return (typeof value === 'string' || Buffer.isBuffer(value)) && value.length > 0;
}

export function configInvalid(message: string): KeydError {
  return new KeydError('TRESOR_ERR_CONFIG_INVALID', message);
}
