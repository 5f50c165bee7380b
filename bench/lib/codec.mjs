// Codec micro-benchmark: coapkit encodeMessage/decodeMessage vs coap-packet generate/parse
// (node-coap's codec) on the same two messages. Uses tinybench.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Bench } from 'tinybench';

const PAYLOAD_100 = Buffer.from(
  '{"t":21.5,"h":40.25,"p":1013.2,"id":"sensor-0042","ts":1732240000,"ok":true,"x":"abcdefghijklm"}',
);

/** Operations per timed iteration (see below). */
const BATCH = 100;

/** The two messages, in both libraries' input forms. */
function messages() {
  const token = Buffer.from([0xa1, 0xb2, 0xc3, 0xd4]);
  const get = {
    coapkit: {
      type: 0,
      code: 0x01,
      messageId: 0x1234,
      token,
      options: [
        { number: 11, value: Buffer.from('sensors') },
        { number: 11, value: Buffer.from('temperature') },
        { number: 15, value: Buffer.from('unit=celsius') },
        { number: 15, value: Buffer.from('precision=2') },
      ],
    },
    packet: {
      confirmable: true,
      code: '0.01',
      messageId: 0x1234,
      token,
      options: [
        { name: 'Uri-Path', value: Buffer.from('sensors') },
        { name: 'Uri-Path', value: Buffer.from('temperature') },
        { name: 'Uri-Query', value: Buffer.from('unit=celsius') },
        { name: 'Uri-Query', value: Buffer.from('precision=2') },
      ],
    },
  };
  const content = {
    coapkit: {
      type: 2,
      code: 0x45,
      messageId: 0x1234,
      token,
      options: [{ number: 12, value: Buffer.from([50]) }],
      payload: PAYLOAD_100,
    },
    packet: {
      ack: true,
      code: '2.05',
      messageId: 0x1234,
      token,
      options: [{ name: 'Content-Format', value: Buffer.from([50]) }],
      payload: PAYLOAD_100,
    },
  };
  return { get, content };
}

/**
 * @param {{ root: string, quick: boolean }} ctx
 * @returns {Promise<{ status: string, note?: string, cases?: any[] }>}
 */
export async function codecBench(ctx) {
  let packet;
  try {
    packet = createRequire(join(ctx.root, 'package.json'))('coap-packet');
  } catch {
    return { status: 'skipped', note: 'coap-packet not installed' };
  }
  const distCodec = join(ctx.root, 'dist/codec/message.js');
  let ck = null;
  let note;
  if (existsSync(distCodec)) {
    try {
      ck = await import(pathToFileURL(distCodec).href);
    } catch (e) {
      note = `coapkit codec failed to load: ${e instanceof Error ? e.message : e}`;
    }
  } else {
    note = 'coapkit codec not built (dist/codec/message.js)';
  }
  const msgs = messages();
  const cases = [];
  for (const [name, m] of Object.entries(msgs)) {
    const wire = packet.generate(m.packet);
    if (ck) {
      // Same bytes from both encoders, and each decoder reads the other's output.
      const mine = ck.encodeMessage(m.coapkit);
      if (!mine.equals(wire)) throw new Error(`codec bench: encodings differ for ${name}`);
      // Both decoders read the same fields: header, token, every option value, payload.
      const d = ck.decodeMessage(wire);
      const p = packet.parse(wire);
      const same =
        d.messageId === p.messageId &&
        d.token.equals(p.token) &&
        d.payload.equals(p.payload) &&
        d.options.length === p.options.length &&
        d.options.every((o, i) => o.value.equals(p.options[i].value)) &&
        d.options.every((o, i) => o.value.equals(m.coapkit.options[i].value));
      if (!same) throw new Error(`codec bench: decoders disagree on ${name}`);
    }
    const time = ctx.quick ? 100 : 1000;
    const bench = new Bench({ time, warmup: true, warmupTime: ctx.quick ? 30 : 200 });
    let sink = 0;
    // Each timed iteration runs BATCH operations: tinybench reads the clock around every
    // iteration and performance.now() costs ~80 ns in Node 20, as much as a whole decode, so
    // timing single calls would add the same constant to both codecs and squash the ratio.
    const batch = (fn) => () => {
      for (let i = 0; i < BATCH; i++) sink += fn();
    };
    bench.add(
      `coap-packet generate`,
      batch(() => packet.generate(m.packet).length),
    );
    bench.add(
      `coap-packet parse`,
      batch(() => packet.parse(wire).options.length),
    );
    if (ck) {
      bench.add(
        `coapkit encodeMessage`,
        batch(() => ck.encodeMessage(m.coapkit).length),
      );
      bench.add(
        `coapkit decodeMessage`,
        batch(() => ck.decodeMessage(wire).options.length),
      );
    }
    await bench.run();
    const ops = {};
    for (const task of bench.tasks) {
      const r = task.result;
      const hz = r?.throughput?.mean ?? r?.hz ?? 0;
      const meanNs = r?.latency?.mean !== undefined ? r.latency.mean * 1e6 : hz > 0 ? 1e9 / hz : 0;
      ops[task.name] = { opsPerSec: hz * BATCH, nsPerOp: meanNs / BATCH };
    }
    if (sink === -1) console.log(sink);
    cases.push({ message: name, bytes: wire.length, ops });
  }
  return ck ? { status: 'ok', cases } : { status: 'partial', note, cases };
}
