export * from './bytes.js';
export * from './dns.js';
export * from './file.js';
export * from './network.js';
export * from './reader.js';
export * from './tcp.js';
