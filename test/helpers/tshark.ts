/**
 * tshark for the tests: whether it is here, its `-T fields` output for a
 * capture file, and a recording of the datagrams coapkit sends, ready for a pcap.
 * (test/vectors/captures/tshark.ts compares its JSON decoding with dissect()'s.)
 */
import { execFile, spawnSync } from 'node:child_process';
import dc from 'node:diagnostics_channel';
import { promisify } from 'node:util';
import type { PcapPacket } from './pcap.js';

export const hasTshark = spawnSync('tshark', ['-v'], { timeout: 10_000 }).status === 0;

export interface TsharkFieldsOptions {
  /** An NSS key log to decrypt (D)TLS with (`-o tls.keylog_file:`). */
  keylog?: string;
  /** A UDP port to decode as DTLS (`-d udp.port==N,dtls`). */
  dtlsPort?: number;
  /** More options (e.g. `['-o', 'uat:…']`). */
  args?: string[];
  /** A display filter (`-Y`): only the frames it keeps. */
  filter?: string;
  /** What joins the values of a field that occurs more than once (tshark's default ','). */
  aggregator?: string;
}

/**
 * `tshark -r FILE … -T fields -e FIELD…`: one line a frame, the fields
 * tab-separated; trailing white space removed ('' when no frame is shown).
 */
export async function tsharkFields(
  file: string,
  fields: readonly string[],
  o: TsharkFieldsOptions = {},
): Promise<string> {
  const args = [
    '-r',
    file,
    ...(o.keylog !== undefined ? ['-o', `tls.keylog_file:${o.keylog}`] : []),
    ...(o.dtlsPort !== undefined ? ['-d', `udp.port==${o.dtlsPort},dtls`] : []),
    ...(o.args ?? []),
    ...(o.filter !== undefined ? ['-Y', o.filter] : []),
    '-T',
    'fields',
    ...(o.aggregator !== undefined ? ['-E', `aggregator=${o.aggregator}`] : []),
    ...fields.flatMap((f) => ['-e', f]),
  ];
  const { stdout } = await promisify(execFile)('tshark', args, {
    timeout: 60_000,
    maxBuffer: 64 << 20,
  });
  return stdout.trimEnd();
}

/** `tsharkFields` split into frames, each the list of its fields. */
export async function tsharkRows(
  file: string,
  fields: readonly string[],
  o: TsharkFieldsOptions = {},
): Promise<string[][]> {
  return (await tsharkFields(file, fields, o)).split('\n').map((l) => l.split('\t'));
}

/**
 * Records every datagram coapkit sends (the `coapkit:message:sent` channel)
 * until `stop()`; `packets(serverPort)` gives them as pcap packets between the
 * client and the server, the server's port shown as 5683 (so tshark sees CoAP).
 */
export function recordSent(): { stop(): void; packets(serverPort: number): PcapPacket[] } {
  const captured: Array<{ port: number; data: Buffer; t: number }> = [];
  const onSent = (m: unknown) => {
    const e = m as { peer: { port: number }; data: Uint8Array };
    captured.push({ port: e.peer.port, data: Buffer.from(e.data), t: Date.now() });
  };
  dc.subscribe('coapkit:message:sent', onSent);
  return {
    stop: () => dc.unsubscribe('coapkit:message:sent', onSent),
    packets: (serverPort) => {
      const clientPort = captured.find((c) => c.port !== serverPort)!.port;
      return captured.map((c) => {
        const toServer = c.port === serverPort;
        return {
          src: { address: '127.0.0.1', port: toServer ? clientPort : 5683 },
          dst: { address: '127.0.0.1', port: toServer ? 5683 : clientPort },
          data: c.data,
          timeMs: c.t,
        };
      });
    },
  };
}
