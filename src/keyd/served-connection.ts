/**
 * One accepted keyd connection: carries protocol.ts frames between the socket and a KeyService with
 * the caller the transport proved. Errors: KeydError and CryptoError codes and messages pass through
 * (they are written to be shown); anything else becomes TRESOR_ERR_INTERNAL with a fixed message,
 * and only the log sees more. Arguments and results are never logged.
 */
import type { Socket } from 'node:net';
import { CryptoError, wipe } from '../crypto/index.ts';
import { KeydError } from './errors.ts';
import type { KeydLogger } from './keyd-logger.ts';
import type { Caller, KeydOperationName, KeyService } from './operations.ts';
import {
  CLIENT_NAME_PATTERN,
  decodeRequest,
  encodeFrame,
  errorResponse,
  FrameDecoder,
  type Greeting,
  okResponse,
  PROTOCOL_VERSION,
  parsePayload,
  type ResponseFrame,
  type WireError,
} from './protocol.ts';

/**
 * Operations whose result carries a plaintext key in `key`. Here the connection is the key's last
 * holder in keyd: once the answer frame is encoded (and the frame is wiped once written), the key is
 * wiped too (src/crypto/index.ts, the rule for key material).
 */
const KEY_RESULTS: ReadonlySet<KeydOperationName> = new Set([
  'generateDataKey',
  'unwrapDataKey',
  'generateBackupDataKey',
  'unwrapBackupDataKey',
]);

/** Requests one connection may have in flight before the server stops reading from it. */
const MAX_IN_FLIGHT_PER_CONNECTION = 64;
/** How long a refused or closing peer gets to read our last frame before the socket is destroyed. */
export const LINGER_MS = 2_000;

export interface ServeContext {
  service: KeyService;
  logger: KeydLogger;
  isClosing(): boolean;
  track(promise: Promise<void>): void;
}

/** One accepted connection: decodes frames, answers hello, dispatches everything else concurrently. */
export class ServedConnection {
  readonly #socket: Socket;
  #caller: Caller;
  readonly #ctx: ServeContext;
  readonly #decoder = new FrameDecoder();
  /** Only the first request may be hello, and only on the Unix socket does it name the caller. */
  #helloAllowed: boolean;
  readonly #nameable: boolean;
  #inFlight = 0;
  #paused = false;

  constructor(socket: Socket, caller: Caller, nameable: boolean, ctx: ServeContext) {
    this.#socket = socket;
    this.#caller = caller;
    this.#nameable = nameable;
    this.#helloAllowed = true;
    this.#ctx = ctx;
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.once('close', () => this.#decoder.clear());
  }

  greet(): void {
    const greeting: Greeting = { server: 'keyd', v: PROTOCOL_VERSION };
    this.#send(okResponse(null, greeting));
  }

  /** Graceful end once in-flight answers are written: flushes, then destroys. */
  finish(): void {
    if (this.#socket.destroyed) return;
    this.#socket.end(() => this.#socket.destroy());
  }

  #onData(chunk: Buffer): void {
    if (this.#ctx.isClosing()) {
      chunk.fill(0);
      return;
    }
    let payloads: Buffer[];
    try {
      payloads = this.#decoder.push(chunk);
    } catch (error) {
      // Broken framing: the stream cannot be re-synchronised, so say why and hang up.
      this.#socket.removeAllListeners('data');
      refuse(this.#socket, wireError(error));
      return;
    }
    for (const payload of payloads) this.#onPayload(payload);
  }

  #onPayload(payload: Buffer): void {
    let message: unknown;
    try {
      message = parsePayload(payload);
    } catch (error) {
      this.#send(errorResponse(null, wireError(error)));
      return;
    } finally {
      payload.fill(0);
    }
    const request = decodeRequest(message);
    if (!request.ok) {
      this.#send(errorResponse(request.id, wireError(request.error)));
      return;
    }
    const helloAllowed = this.#helloAllowed;
    this.#helloAllowed = false;
    if (request.op === 'hello') {
      this.#send(this.#hello(request.id, request.args.client as string, helloAllowed));
      return;
    }
    this.#dispatch(request.id, request.op, request.args);
  }

  #hello(id: number, client: string, allowed: boolean): ResponseFrame {
    if (!allowed)
      return errorResponse(id, {
        code: 'TRESOR_ERR_REQUEST_INVALID',
        message: 'hello must be the first request',
      });
    if (!CLIENT_NAME_PATTERN.test(client)) {
      return errorResponse(id, {
        code: 'TRESOR_ERR_REQUEST_INVALID',
        message: 'client name must be 1-64 characters of [A-Za-z0-9._-]',
      });
    }
    if (this.#nameable) this.#caller = { id: `unix:${client}`, role: this.#caller.role };
    this.#ctx.logger.debug({ caller: this.#caller.id }, 'keyd client said hello');
    return okResponse(id, { caller: this.#caller.id });
  }

  #dispatch(id: number, op: KeydOperationName, args: Record<string, unknown>): void {
    const caller: Caller = Object.freeze({ ...this.#caller });
    this.#inFlight += 1;
    if (this.#inFlight >= MAX_IN_FLIGHT_PER_CONNECTION && !this.#paused) {
      this.#paused = true;
      this.#socket.pause();
    }
    const work = (async () => {
      let response: ResponseFrame;
      let result: unknown;
      try {
        result = await this.#ctx.service.call(op, args as never, caller);
        response = okResponse(id, result);
      } catch (error) {
        response = errorResponse(id, this.#errorFor(op, error));
      }
      try {
        this.#send(response);
      } finally {
        if (KEY_RESULTS.has(op)) wipe((result as { key?: Buffer } | undefined)?.key);
      }
    })().finally(() => {
      this.#inFlight -= 1;
      if (this.#paused && this.#inFlight < MAX_IN_FLIGHT_PER_CONNECTION / 2) {
        this.#paused = false;
        this.#socket.resume();
      }
    });
    this.#ctx.track(work);
  }

  #errorFor(op: string, error: unknown): WireError {
    if (error instanceof KeydError || error instanceof CryptoError)
      return { code: error.code, message: error.message };
    // Name and stack frames only: a message may quote the data it choked on.
    const fields = {
      op,
      caller: this.#caller.id,
      error: error instanceof Error ? error.name : typeof error,
      stack: error instanceof Error ? error.stack?.split('\n').slice(1, 8).join('\n') : undefined,
    };
    this.#ctx.logger.error(fields, 'keyd operation failed unexpectedly');
    return { code: 'TRESOR_ERR_INTERNAL', message: 'internal keyd error' };
  }

  #send(response: ResponseFrame): void {
    let frame: Buffer;
    try {
      frame = encodeFrame(response);
    } catch (error) {
      frame = encodeFrame(errorResponse(response.id, wireError(error)));
    }
    write(this.#socket, frame);
  }
}

/** Writes a frame and wipes it once the socket has taken it (it may carry a data key). */
function write(socket: Socket, frame: Buffer): void {
  if (socket.destroyed || !socket.writable) {
    frame.fill(0);
    return;
  }
  socket.write(frame, () => frame.fill(0));
}

/** Sends one connection-level error frame and hangs up, reading (and dropping) whatever the peer still sends. */
export function refuse(socket: Socket, error: WireError): void {
  write(socket, encodeFrame(errorResponse(null, error)));
  socket.on('data', (chunk: Buffer) => chunk.fill(0));
  socket.resume();
  socket.end();
  setTimeout(() => socket.destroy(), LINGER_MS).unref();
}

function wireError(error: unknown): WireError {
  if (error instanceof KeydError) return { code: error.code, message: error.message };
  return { code: 'TRESOR_ERR_INTERNAL', message: 'internal keyd error' };
}
