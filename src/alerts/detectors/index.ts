/**
 * The built-in detectors, made from their config (`server.alerts.detectors`, docs/alerts.md).
 */
import { breakGlassDetector, noGrantDetector, tenantClosureDetector } from './access-events.ts';
import { bruteForceDetector } from './brute-force.ts';
import type { Detector } from './types.ts';

export interface DetectorConfig {
  /** Window of the counting detectors. */
  windowMs: number;
  bruteForceAccountFailures: number;
  bruteForceAddressFailures: number;
  noGrantRefusals: number;
}

export function builtInDetectors(config: DetectorConfig): Detector[] {
  return [
    bruteForceDetector({
      accountFailures: config.bruteForceAccountFailures,
      addressFailures: config.bruteForceAddressFailures,
      windowMs: config.windowMs,
    }),
    breakGlassDetector(),
    noGrantDetector({ refusals: config.noGrantRefusals, windowMs: config.windowMs }),
    tenantClosureDetector(),
  ];
}
