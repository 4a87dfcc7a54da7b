// The public surface of src/node: the CLI entry point (the daemon, transport and client come
// with later work).
export { main, buildProgram } from './cli.js';
