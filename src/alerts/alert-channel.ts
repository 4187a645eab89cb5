/**
 * A way an opened alert leaves Tresor (webhook-channel.ts, mail-channel.ts): it sends one message
 * or throws a TresorError whose message names the failure without a secret, a URL path or a body.
 */

import type { AlertMessage } from './alert-message.ts';
import type { DeliveryChannel } from './alert-store-schema.ts';

export interface AlertChannel {
  readonly name: DeliveryChannel;
  send(message: AlertMessage): Promise<void>;
  close(): Promise<void>;
}
