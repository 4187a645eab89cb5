/**
 * A minimal Server-Sent Events client (WHATWG HTML §9.2) for `GET /v1/audit/stream` over a test
 * stack's CA: the entries as they arrive, and `until`, which resolves as soon as they satisfy a
 * condition (checked at every event, never by polling) or fails at its deadline.
 */
import { readFileSync } from 'node:fs';
import { Agent, request as httpsRequest } from 'node:https';
import type { TresorStack } from './tresor-stack.ts';

export interface AuditStream<T> {
  events: { id: string; data: T }[];
  /** The answer's status code, once the stream is open. */
  opened: Promise<number>;
  until(
    what: string,
    done: (events: { id: string; data: T }[]) => boolean,
    timeoutMs?: number,
  ): Promise<void>;
  close(): void;
}

export function openAuditStream<T = unknown>(
  s: Pick<TresorStack, 'url' | 'caFile'>,
  token: string,
  headers: Record<string, string> = {},
  path = '/v1/audit/stream',
): AuditStream<T> {
  const events: { id: string; data: T }[] = [];
  const waiters = new Set<() => void>();
  const agent = new Agent({ ca: readFileSync(s.caFile) });
  let closeFn: () => void = () => {};
  const opened = new Promise<number>((resolve, reject) => {
    const req = httpsRequest(
      `${s.url}${path}`,
      { agent, headers: { authorization: `Bearer ${token}`, ...headers } },
      (res) => {
        resolve(res.statusCode ?? 0);
        res.setEncoding('utf8');
        let buffer = '';
        res.on('data', (chunk: string) => {
          buffer += chunk;
          for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            let id = '';
            let data = '';
            for (const line of block.split('\n')) {
              if (line.startsWith('id: ')) id = line.slice(4);
              else if (line.startsWith('data: ')) data += line.slice(6);
            }
            if (data) events.push({ id, data: JSON.parse(data) as T });
          }
          for (const wake of waiters) wake();
        });
        res.on('error', () => undefined);
      },
    );
    req.on('error', reject);
    req.end();
    closeFn = () => {
      req.destroy();
      agent.destroy();
    };
  });
  const until: AuditStream<T>['until'] = (what, done, timeoutMs = 30_000) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (!done(events)) return;
        clearTimeout(timer);
        waiters.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`${what}: not on the audit stream within ${timeoutMs} ms`));
      }, timeoutMs);
      waiters.add(check);
      check();
    });
  return { events, opened, until, close: () => closeFn() };
}
