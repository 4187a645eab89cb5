/**
 * An API key used from a new network: the networks (IPv4 /24, IPv6 /48 — an application's servers
 * usually share one) each key was seen from are learned; a request from one not seen before raises
 * `api-key.new-network` about the key. The first network a key is seen from is learned silently.
 *
 * What is learned lives in memory, bounded (keys, networks per key): after a restart each key's
 * first network is learned again, so a change right after a restart goes unnoticed, never the other
 * way round (no false alert from a restart).
 */
import { isIPv4, isIPv6 } from 'node:net';
import type { Detector } from './types.ts';

const MAX_KEYS = 10_000;
const MAX_NETWORKS_PER_KEY = 64;

/** The /24 of an IPv4 address (also IPv4-mapped IPv6), the /48 of an IPv6 one; undefined otherwise. */
export function networkOf(address: string): string | undefined {
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address;
  if (isIPv4(v4)) return `${v4.split('.').slice(0, 3).join('.')}.0/24`;
  if (!isIPv6(address)) return undefined;
  // Expand "::" so the first three groups are known.
  const [head = '', tail] = address.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups =
    tail === undefined ? left : [...left, ...Array(8 - left.length - right.length).fill('0'), ...right];
  return `${groups
    .slice(0, 3)
    .map((g) => Number.parseInt(g, 16).toString(16))
    .join(':')}::/48`;
}

export function apiKeyNetworkDetector(): Detector {
  const seen = new Map<string, Set<string>>();
  return {
    name: 'apiKeyNetwork',
    observe({ index, event }) {
      if (event.actor.kind !== 'api-key' || typeof event.sourceAddress !== 'string') return [];
      const network = networkOf(event.sourceAddress);
      if (network === undefined) return [];
      const key = event.actor.id;
      const networks = seen.get(key);
      if (!networks) {
        seen.set(key, new Set([network]));
        if (seen.size > MAX_KEYS) seen.delete(seen.keys().next().value as string);
        return [];
      }
      if (networks.has(network)) return [];
      if (networks.size < MAX_NETWORKS_PER_KEY) networks.add(network);
      return [
        {
          kind: 'api-key.new-network',
          severity: 'medium',
          subject: { kind: 'api-key', id: key },
          at: event.at,
          evidence: [index],
          count: 1,
        },
      ];
    },
  };
}
