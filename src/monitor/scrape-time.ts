/**
 * Metrics whose value another part keeps and the scrape reads: a counter or a label-less gauge set
 * from a read function at each scrape. An unknown value (the part not wired, or unable to answer
 * now: the store closing) leaves the metric out of that scrape instead of failing it or showing a
 * false 0 — the other series still tell the operator what is wrong.
 */
import { Counter, Gauge, type Registry } from 'prom-client';

type Read = () => number | undefined | Promise<number | undefined>;

async function readNow(read: Read): Promise<number | undefined> {
  return Promise.resolve()
    .then(read)
    .catch(() => undefined);
}

/** A counter mirroring a count kept elsewhere (it only grows while the process lives). */
export function scrapeTimeCounter(registry: Registry, name: string, help: string, read: Read): void {
  new Counter({
    name,
    help,
    registers: [registry],
    async collect() {
      this.reset();
      const v = await readNow(read);
      // reset() puts a label-less metric back at 0: remove() leaves it out instead.
      if (v === undefined) this.remove();
      else this.inc(v);
    },
  });
}

/** A label-less gauge read at each scrape. */
export function scrapeTimeGauge(registry: Registry, name: string, help: string, read: Read): void {
  new Gauge({
    name,
    help,
    registers: [registry],
    async collect() {
      this.reset();
      const v = await readNow(read);
      if (v === undefined) this.remove();
      else this.set(v);
    },
  });
}
