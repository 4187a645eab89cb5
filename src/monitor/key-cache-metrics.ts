/**
 * The server's cache of unwrapped keys (keyd/key-cache.ts): hit ratio is
 * `rate(hits) / (rate(hits) + rate(misses))`; a low one means most requests wait for keyd.
 */
import type { Registry } from 'prom-client';
import { scrapeTimeCounter, scrapeTimeGauge } from './scrape-time.ts';

export interface KeyCacheFacts {
  hits: number;
  misses: number;
  evictions: number;
  expirations: number;
  size: number;
}

export function keyCacheMetrics(registry: Registry, stats: () => KeyCacheFacts | undefined): void {
  scrapeTimeCounter(
    registry,
    'tresor_key_cache_hits_total',
    'Key cache lookups that found the key.',
    () => stats()?.hits,
  );
  scrapeTimeCounter(
    registry,
    'tresor_key_cache_misses_total',
    'Key cache lookups that had to ask keyd.',
    () => stats()?.misses,
  );
  scrapeTimeCounter(
    registry,
    'tresor_key_cache_evictions_total',
    'Keys pushed out of the cache by its size bound.',
    () => stats()?.evictions,
  );
  scrapeTimeCounter(
    registry,
    'tresor_key_cache_expirations_total',
    'Keys removed from the cache by their time or use bound.',
    () => stats()?.expirations,
  );
  scrapeTimeGauge(registry, 'tresor_key_cache_entries', 'Keys held in the cache now.', () => stats()?.size);
}
