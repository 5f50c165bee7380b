// The PSK credentials shared by the DTLS bench server and client.
export const BENCH_IDENTITY = 'bench';
export const BENCH_KEY = 'coapkit-bench-psk';
