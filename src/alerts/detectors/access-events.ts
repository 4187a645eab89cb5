/**
 * Detectors of single access events that a person must always see:
 *
 * - `break-glass.used`: a security officer opened an emergency grant (`grant.break-glass`, success),
 *   critical; subject the officer, so repeated use bumps one alert;
 * - `access.refused-no-grant`: a staff member was refused a tenant-data route (records, collections,
 *   export) — the pipeline's `denied` refusal of a staff session without a live grant — counted per
 *   staff member within a window (threshold 1 by default: every such refusal is worth a look);
 * - `tenant.closed`: a tenant was closed (`tenant.close`, success, not a retry), subject the tenant.
 */
import type { AuditEvent } from '../../audit/event.ts';
import { createThresholdWindow } from './threshold-window.ts';
import type { Detector } from './types.ts';

export function breakGlassDetector(): Detector {
  return {
    name: 'breakGlass',
    observe({ index, event }) {
      if (event.action !== 'grant.break-glass' || event.outcome !== 'success') return [];
      return [
        {
          kind: 'break-glass.used',
          severity: 'critical',
          subject: { kind: 'staff', id: event.actor.id },
          at: event.at,
          evidence: [index],
          count: 1,
        },
      ];
    },
  };
}

export interface NoGrantConfig {
  /** Refusals of one staff member within the window that raise the alert. */
  refusals: number;
  windowMs: number;
}

/** Routes of tenant data: what staff reach only through a live grant. */
const TENANT_DATA_ROUTE = /^[A-Z]+ \/v1\/(collections|export)(\/|$)/;

function isTenantDataRefusal(event: AuditEvent): boolean {
  if (event.outcome !== 'denied' || event.actor.kind !== 'staff') return false;
  const route = event.target?.route;
  return typeof route === 'string' && TENANT_DATA_ROUTE.test(route);
}

export function noGrantDetector(config: NoGrantConfig): Detector {
  const staff = createThresholdWindow({ threshold: config.refusals, windowMs: config.windowMs });
  return {
    name: 'noGrant',
    observe({ index, event }) {
      if (!isTenantDataRefusal(event)) return [];
      const crossed = staff.hit(event.actor.id, event.at, index);
      if (!crossed) return [];
      return [
        {
          kind: 'access.refused-no-grant',
          severity: 'high',
          subject: { kind: 'staff', id: event.actor.id },
          at: event.at,
          evidence: crossed.evidence,
          count: crossed.weight,
        },
      ];
    },
  };
}

export function tenantClosureDetector(): Detector {
  return {
    name: 'tenantClosures',
    observe({ index, event }) {
      if (event.action !== 'tenant.close' || event.outcome !== 'success' || event.tenant === null) return [];
      if (event.target?.retry === true) return [];
      return [
        {
          kind: 'tenant.closed',
          severity: 'medium',
          subject: { kind: 'tenant', id: event.tenant },
          at: event.at,
          evidence: [index],
          count: 1,
        },
      ];
    },
  };
}
