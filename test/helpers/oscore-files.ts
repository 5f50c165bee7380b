/**
 * The OSCORE context pair the CLI tests write as --oscore files: the server
 * (sender id 0x01) and its client (sender id "c1"), one secret and salt.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const OSCORE_SERVER = {
  secret_hex: '0102030405060708090a0b0c0d0e0f10',
  salt_hex: '9e7ca92223786340',
  'sender-id_hex': '01',
  'recipient-id_ascii': 'c1',
};

export const OSCORE_CLIENT = {
  secret_hex: '0102030405060708090a0b0c0d0e0f10',
  salt_hex: '9e7ca92223786340',
  'sender-id_ascii': 'c1',
  'recipient-id_hex': '01',
};

/** A temporary folder with the server's context (server.json) and the client's (client.json). */
export function oscoreContextDir(
  prefix: string,
  server: object = OSCORE_SERVER,
  client: object = OSCORE_CLIENT,
): { dir: string; sfile: string; cfile: string } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const sfile = join(dir, 'server.json');
  const cfile = join(dir, 'client.json');
  writeFileSync(sfile, JSON.stringify(server));
  writeFileSync(cfile, JSON.stringify(client));
  return { dir, sfile, cfile };
}
