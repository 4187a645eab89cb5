/**
 * What a metric label may carry. Labels are the one part of a scrape an operator's Prometheus keeps
 * for weeks and shows to anyone with a dashboard, so a label value is only ever a word of Tresor's
 * own vocabulary — a route template, an operation name, an error code, an audit action, a job or
 * destination name from the configuration — checked against its pattern, and each label has a
 * bounded number of values: once the bound is reached, new values become `other`. A tenant id, a
 * record id, a field value or a secret can never match these patterns by construction of the
 * callers, and the bound keeps a bug from turning one into a time series per customer.
 */

/** The value a label takes when a value fails its pattern or the label is full. */
export const OTHER = 'other';

export interface LabelVocabulary {
  /** The value itself when it matches the pattern and there is room, else `other`. */
  of(value: string): string;
}

export function labelVocabulary(pattern: RegExp, maxValues: number): LabelVocabulary {
  const seen = new Set<string>();
  return {
    of(value) {
      if (seen.has(value)) return value;
      if (!pattern.test(value) || seen.size >= maxValues) return OTHER;
      seen.add(value);
      return value;
    },
  };
}

/** A route template as the router declared it: `/v1/collections/:name/records/:id`. */
export const ROUTE_TEMPLATE = /^(?:\/(?:[A-Za-z0-9._~-]+|:[A-Za-z][A-Za-z0-9]*))+$|^\/$/;
/** An audit action, `domain.verb` (the route table's own pattern). */
export const AUDIT_ACTION = /^[a-z][a-z-]*(?:\.[a-z][a-z-]*)+$/;
/** An error code of the catalogue. */
export const ERROR_CODE = /^TRESOR_ERR_[A-Z0-9_]+$/;
/** A name Tresor itself gives (jobs, keyd operations, destinations, stores). */
export const PLAIN_NAME = /^[A-Za-z][A-Za-z0-9._-]{0,63}$/;
