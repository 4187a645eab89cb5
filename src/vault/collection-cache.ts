/**
 * The parsed collection rows (schema, schema version, blind-index key id) this process has read,
 * per tenant-store handle and collection name, so that a record request does not read and parse
 * the row each time. Keyed by the store handle (a WeakMap): a store closed, destroyed or reopened
 * comes back with a new handle and so with an empty cache. Collections per tenant are bounded
 * (limits.maxCollections), so each store's map is too. An entry is used for at most `ttlMs`.
 *
 * Why a stale entry is safe:
 *  - putCollection in this process drops the entry once its change has committed (or failed), and an
 *    entry read while a change was in progress is not stored, so within one process no request sees
 *    a schema older than the last committed change it could have observed.
 *  - Another process over the same store can change the schema unseen; then, for at most `ttlMs`:
 *    - writes (create, update) cannot commit under the wrong schema: they prepare under the cached
 *      schema and version, and their transaction re-reads schema_version (assertSchemaVersion) and
 *      refuses with StaleSchema; the retry reads the row afresh (`fresh`), which also refreshes this
 *      cache. Input refused under a cached schema is checked against the row's version first
 *      (checkedUnder), so a change made elsewhere does not cause a wrong 422 either.
 *    - reads still decrypt and authenticate every envelope (AAD: tenant, collection, record, field,
 *      record version; the schema version is not part of it), so a stale schema can never make a
 *      wrong, moved or tampered value decrypt, and the values are those stored. A record holding a
 *      field the cached schema lacks makes the read fetch the row afresh (readRecord), so a field
 *      added elsewhere is not left out; a field dropped elsewhere has no envelope left to return.
 *    - a search refused under the cached schema is re-checked the same way; a search on a field
 *      just made unsearchable elsewhere may find nothing (its index rows are gone) instead of
 *      being refused with 400, and a list or search page may leave out a field added elsewhere (its
 *      values are still only ever the stored, authenticated ones), for at most `ttlMs`. The
 *      blind-index key id never changes after the collection is created.
 *    - delete uses only the collection's name.
 */
import type { Store } from '../store/types.ts';
import { type Collection, loadCollection } from './collection-row.ts';
import { notFound } from './record-errors.ts';
import { isValidName } from './schema.ts';
import type { TenantDB } from './tenant-store-schema.ts';

export interface CollectionCache {
  ttlMs: number;
  byStore: WeakMap<object, StoreCollections>;
}

/** What the cache's users pass in: the cache of their vault (if any) and its clock. */
interface CacheContext {
  collections?: CollectionCache;
  clock: () => Date;
}

interface StoreCollections {
  entries: Map<string, { collection: Collection; until: number }>;
  /** Bumped by every forget: a load that started before it does not store its answer. */
  generation: number;
}

export function createCollectionCache(ttlMs: number): CollectionCache | undefined {
  if (!Number.isFinite(ttlMs) || ttlMs < 0) throw new RangeError('collection cache TTL must be >= 0');
  return ttlMs === 0 ? undefined : { ttlMs, byStore: new WeakMap() };
}

function storeCollections(cache: CollectionCache, store: Store<TenantDB>): StoreCollections {
  let mine = cache.byStore.get(store);
  if (!mine) {
    mine = { entries: new Map(), generation: 0 };
    cache.byStore.set(store, mine);
  }
  return mine;
}

/** Drops the cached row of a collection (its schema changed, or a change was attempted). */
export function forgetCollection(ctx: CacheContext, store: Store<TenantDB>, name: string): void {
  if (!ctx.collections) return;
  const mine = storeCollections(ctx.collections, store);
  mine.generation++;
  mine.entries.delete(name);
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/** The collection, from the cache when allowed and fresh enough; `fresh` always reads the row. */
export async function currentCollection(
  ctx: CacheContext,
  store: Store<TenantDB>,
  name: string,
  fresh = false,
): Promise<Collection | undefined> {
  const cache = ctx.collections;
  if (!cache || !isValidName(name)) return loadCollection(store.db, name);
  const mine = storeCollections(cache, store);
  const now = ctx.clock().getTime();
  if (!fresh) {
    const hit = mine.entries.get(name);
    if (hit && now < hit.until) return hit.collection;
  }
  const seen = mine.generation;
  const collection = await loadCollection(store.db, name);
  if (collection === undefined) {
    mine.entries.delete(name);
    return undefined;
  }
  // Shared by concurrent requests from now on: nothing may change it.
  deepFreeze(collection);
  if (seen === mine.generation) mine.entries.set(name, { collection, until: now + cache.ttlMs });
  return collection;
}

/** The current collection, or the record lookups' one NOT_FOUND. */
export async function requireCollection(
  ctx: CacheContext,
  store: Store<TenantDB>,
  name: string,
  fresh = false,
): Promise<Collection> {
  const collection = await currentCollection(ctx, store, name, fresh);
  if (!collection) throw notFound();
  return collection;
}
