/**
 * Staff access grants live now, and how many of them are break-glass (access/grant-counts.ts):
 * numbers only, never which grant, person or tenant. One read of the store serves both gauges of a
 * scrape.
 */
import type { Registry } from 'prom-client';
import { scrapeTimeGauge } from './scrape-time.ts';

export function grantMetrics(
  registry: Registry,
  counts: () => (() => Promise<{ active: number; breakGlass: number }>) | undefined,
): void {
  let reading: Promise<{ active: number; breakGlass: number } | undefined> | undefined;
  const read = () => {
    reading ??= (counts()?.() ?? Promise.resolve(undefined)).finally(() => {
      reading = undefined;
    });
    return reading;
  };
  scrapeTimeGauge(
    registry,
    'tresor_access_grants_active',
    'Staff access grants live now (break-glass included).',
    async () => (await read())?.active,
  );
  scrapeTimeGauge(
    registry,
    'tresor_access_grants_break_glass_active',
    'Break-glass grants live now.',
    async () => (await read())?.breakGlass,
  );
}
