export * from './describe.js';
export * from './tracer.js';
