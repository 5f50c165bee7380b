/**
 * A node:diagnostics_channel Channel seen through a payload type. At run time
 * it is the Channel itself (`dc.channel(name)`, the same object every
 * subscriber of that name gets): no wrapper, no cost. Publishers still check
 * `hasSubscribers` first so a payload is only built when someone listens.
 */
import dc from 'node:diagnostics_channel';

/** A subscriber of a {@link TypedChannel}: gets the payload and the channel name. */
export type TypedListener<T> = (message: T, name: string | symbol) => void;

/**
 * A diagnostics channel whose messages have type `T` (see `channels` and
 * `ChannelPayloads` for coapkit's). Subscribing to it is the same as
 * `diagnostics_channel.subscribe(name, fn)`, with the payload typed.
 */
export interface TypedChannel<T, N extends string = string> {
  /** The channel name, e.g. `coapkit:message:sent`. */
  readonly name: N;
  /** True when at least one subscriber listens: build the payload only then. */
  readonly hasSubscribers: boolean;
  /** Delivers `message` synchronously to every subscriber. */
  publish(message: T): void;
  /** Adds a subscriber. */
  subscribe(onMessage: TypedListener<T>): void;
  /** Removes a subscriber added with {@link TypedChannel.subscribe}. */
  unsubscribe(onMessage: TypedListener<T>): void;
}

/** The node:diagnostics_channel channel `name`, typed to carry `T`. */
export function typedChannel<T, N extends string = string>(name: N): TypedChannel<T, N> {
  return dc.channel(name) as unknown as TypedChannel<T, N>;
}
