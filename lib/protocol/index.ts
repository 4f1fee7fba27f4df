// The wire protocol: framing (frame.ts), the command table and message shapes (commands.ts), and each message's
// encoder (encode.ts) and decoder (decode.ts). Nothing here does I/O.

export * from './commands.js';
export * from './decode.js';
export * from './encode.js';
export * from './frame.js';
