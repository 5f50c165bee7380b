/** The only I/O of the capture module: read a file and parse it. */
import { readFile } from 'node:fs/promises';
import { type CaptureFile, parseCapture } from './reader.js';

export async function readCaptureFile(path: string): Promise<CaptureFile> {
  const bytes = await readFile(path);
  return parseCapture(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
}
