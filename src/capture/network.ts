/**
 * Link-layer, IPv4/IPv6 and UDP decoding of one captured frame. Pure, no I/O.
 * Malformed packets throw CaptureFormatError; callers report them per frame.
 */
import { CaptureFormatError } from '../errors.js';
import { ipv4ToString, ipv6ToString, macToString, need, slice, u8, u16be, u32, u32be } from './bytes.js';

export const LINK_TYPE_NAMES: Record<number, string> = {
  0: 'BSD loopback (null)',
  1: 'Ethernet',
  12: 'Raw IP',
  14: 'Raw IP',
  101: 'Raw IP',
  108: 'OpenBSD loopback',
  113: 'Linux cooked capture v1 (SLL)',
  228: 'Raw IPv4',
  229: 'Raw IPv6',
  276: 'Linux cooked capture v2 (SLL2)',
};

export interface LinkLayer {
  linkType: number;
  name: string;
  headerLength: number;
  /** EtherType (or equivalent) of the payload; 0x0800 IPv4, 0x86dd IPv6. */
  etherType: number;
  src?: string;
  dst?: string;
  /** 802.1Q VLAN ids, outermost first. */
  vlans?: number[];
  /** SLL packet type (0 to us, 4 sent by us...). */
  packetType?: number;
  payload: Uint8Array;
}

const ETH_IPV4 = 0x0800;
const ETH_IPV6 = 0x86dd;

function etherTypeFromVersion(b: Uint8Array): number {
  if (b.length === 0) return 0;
  const v = (b[0] as number) >> 4;
  return v === 4 ? ETH_IPV4 : v === 6 ? ETH_IPV6 : 0;
}

/** Strips the link-layer header of a frame. */
export function decodeLinkLayer(linkType: number, data: Uint8Array): LinkLayer {
  const name = LINK_TYPE_NAMES[linkType] ?? `link type ${linkType}`;
  switch (linkType) {
    case 1: {
      need(data, 0, 14, 'Ethernet header');
      let etherType = u16be(data, 12);
      let o = 14;
      const vlans: number[] = [];
      while (etherType === 0x8100 || etherType === 0x88a8 || etherType === 0x9100) {
        need(data, o, 4, '802.1Q tag');
        vlans.push(u16be(data, o) & 0x0fff);
        etherType = u16be(data, o + 2);
        o += 4;
      }
      const link: LinkLayer = {
        linkType,
        name,
        headerLength: o,
        etherType,
        dst: macToString(data.subarray(0, 6)),
        src: macToString(data.subarray(6, 12)),
        payload: data.subarray(o),
      };
      if (vlans.length > 0) link.vlans = vlans;
      return link;
    }
    case 113: {
      need(data, 0, 16, 'Linux cooked (SLL) header');
      const packetType = u16be(data, 0);
      const addrLen = Math.min(u16be(data, 4), 8);
      return {
        linkType,
        name,
        headerLength: 16,
        etherType: u16be(data, 14),
        src: macToString(data.subarray(6, 6 + addrLen)),
        packetType,
        payload: data.subarray(16),
      };
    }
    case 276: {
      need(data, 0, 20, 'Linux cooked v2 (SLL2) header');
      const addrLen = Math.min(u8(data, 11), 8);
      return {
        linkType,
        name,
        headerLength: 20,
        etherType: u16be(data, 0),
        packetType: u8(data, 10),
        src: macToString(data.subarray(12, 12 + addrLen)),
        payload: data.subarray(20),
      };
    }
    case 12:
    case 14:
    case 101:
      return { linkType, name, headerLength: 0, etherType: etherTypeFromVersion(data), payload: data };
    case 228:
      return { linkType, name, headerLength: 0, etherType: ETH_IPV4, payload: data };
    case 229:
      return { linkType, name, headerLength: 0, etherType: ETH_IPV6, payload: data };
    case 0:
    case 108: {
      need(data, 0, 4, 'loopback header');
      // DLT_NULL is in the capturing host's byte order; DLT_LOOP is big-endian.
      let family = u32be(data, 0);
      if (linkType === 0 && family > 0xffff) family = u32(data, 0, true);
      const etherType = family === 2 ? ETH_IPV4 : [10, 24, 28, 30].includes(family) ? ETH_IPV6 : 0;
      return { linkType, name, headerLength: 4, etherType, payload: data.subarray(4) };
    }
    default:
      throw new CaptureFormatError(`unsupported link type ${linkType}`);
  }
}

export interface IpFragment {
  id: number;
  /** Offset in bytes. */
  offset: number;
  moreFragments: boolean;
}

export interface IpLayer {
  version: 4 | 6;
  src: string;
  dst: string;
  /** Upper-layer protocol (17 UDP, 6 TCP, 1 ICMP, 58 ICMPv6...). */
  protocol: number;
  /** Header length including IPv4 options / IPv6 extension headers. */
  headerLength: number;
  /** Total length announced by the header. */
  totalLength: number;
  ttl: number;
  /** Bytes of IPv4 options. */
  optionsLength?: number;
  /** IPv6 extension header types, in order. */
  extensionHeaders?: number[];
  fragment?: IpFragment;
  /** True when fewer bytes were captured than the header announces. */
  truncated: boolean;
  payload: Uint8Array;
}

/** Decodes an IPv4 or IPv6 packet (by its version nibble). */
export function decodeIp(data: Uint8Array): IpLayer {
  const v = u8(data, 0, 'IP header') >> 4;
  if (v === 4) return decodeIpv4(data);
  if (v === 6) return decodeIpv6(data);
  throw new CaptureFormatError(`unknown IP version ${v}`);
}

export function decodeIpv4(data: Uint8Array): IpLayer {
  need(data, 0, 20, 'IPv4 header');
  const ihl = ((data[0] as number) & 0x0f) * 4;
  if (ihl < 20) throw new CaptureFormatError(`bad IPv4 header length ${ihl}`);
  need(data, 0, ihl, 'IPv4 options');
  const totalLength = u16be(data, 2);
  if (totalLength < ihl) throw new CaptureFormatError(`bad IPv4 total length ${totalLength}`);
  const flagsFrag = u16be(data, 6);
  const end = Math.min(totalLength, data.length);
  const ip: IpLayer = {
    version: 4,
    src: ipv4ToString(data, 12),
    dst: ipv4ToString(data, 16),
    protocol: data[9] as number,
    headerLength: ihl,
    totalLength,
    ttl: data[8] as number,
    truncated: data.length < totalLength,
    payload: data.subarray(ihl, end),
  };
  if (ihl > 20) ip.optionsLength = ihl - 20;
  const mf = (flagsFrag & 0x2000) !== 0;
  const offset = (flagsFrag & 0x1fff) * 8;
  if (mf || offset !== 0) ip.fragment = { id: u16be(data, 4), offset, moreFragments: mf };
  return ip;
}

const IPV6_EXT = new Set([0, 43, 44, 60, 51, 135, 139, 140]);

export function decodeIpv6(data: Uint8Array): IpLayer {
  need(data, 0, 40, 'IPv6 header');
  const payloadLength = u16be(data, 4);
  let next = data[6] as number;
  let o = 40;
  const ext: number[] = [];
  let fragment: IpFragment | undefined;
  while (IPV6_EXT.has(next)) {
    need(data, o, 8, 'IPv6 extension header');
    ext.push(next);
    const nh = data[o] as number;
    let len: number;
    if (next === 44) {
      const fo = u16be(data, o + 2);
      fragment = { id: u32be(data, o + 4), offset: fo & 0xfff8, moreFragments: (fo & 1) !== 0 };
      len = 8;
    } else if (next === 51) {
      len = ((data[o + 1] as number) + 2) * 4;
    } else {
      len = ((data[o + 1] as number) + 1) * 8;
    }
    need(data, o, len, 'IPv6 extension header');
    next = nh;
    o += len;
    // After a non-first fragment header comes continuation data, not more headers.
    if (fragment !== undefined && fragment.offset !== 0) break;
    if (ext.length > 32) throw new CaptureFormatError('too many IPv6 extension headers');
  }
  const totalLength = 40 + payloadLength;
  if (totalLength < o) throw new CaptureFormatError('IPv6 payload length shorter than its extension headers');
  const ip: IpLayer = {
    version: 6,
    src: ipv6ToString(data, 8),
    dst: ipv6ToString(data, 24),
    protocol: next,
    headerLength: o,
    totalLength,
    ttl: data[7] as number,
    truncated: data.length < totalLength,
    payload: data.subarray(o, Math.min(totalLength, data.length)),
  };
  if (ext.length > 0) ip.extensionHeaders = ext;
  if (fragment && (fragment.offset !== 0 || fragment.moreFragments)) ip.fragment = fragment;
  return ip;
}

export interface UdpLayer {
  srcPort: number;
  dstPort: number;
  length: number;
  checksum: number;
  truncated: boolean;
  payload: Uint8Array;
}

export function decodeUdp(data: Uint8Array): UdpLayer {
  need(data, 0, 8, 'UDP header');
  const length = u16be(data, 4);
  if (length < 8) throw new CaptureFormatError(`bad UDP length ${length}`);
  const end = Math.min(length, data.length);
  return {
    srcPort: u16be(data, 0),
    dstPort: u16be(data, 2),
    length,
    checksum: u16be(data, 6),
    truncated: data.length < length,
    payload: slice(data, 8, end - 8, 'UDP payload'),
  };
}
