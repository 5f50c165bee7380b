export * from './cli.js';
export * from './coap.js';
export * from './dissect.js';
export * from './dtls.js';
export * from './dtls-names.js';
export type { ExpertInfo, ExpertSeverity } from './expert.js';
export * from './render.js';
