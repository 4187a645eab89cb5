/**
 * Measured availability (docs/monitoring.md): probe.ts runs one end-to-end probe of the API (TLS,
 * authentication, a write, a read, the read's audit entry); availability.ts turns probe results into
 * availability per day and over 30 days against the objective, with the error budget left;
 * probe-log.ts is the outside prober's file of results.
 */
export {
  type AvailabilityOptions,
  type AvailabilityReport,
  availability,
  type ProbeSample,
  type Window,
} from './availability.ts';
export { PROBE_STEPS, type ProbeResult, type ProbeStep, type ProbeTarget, runProbe } from './probe.ts';
export { appendProbeResult, readProbeResults } from './probe-log.ts';
