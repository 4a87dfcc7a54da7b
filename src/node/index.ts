// The public surface of src/node: the CLI entry point, the daemon, and the typed client library
// with the credentials and tokens it uses.
export { main, buildProgram, runCommand } from './cli.js';
export { MirrorpoolClient } from './client.js';
export type { ClientOptions, RunIo } from './client.js';
export { NodeDaemon } from './daemon.js';
export { initNodeHome, loadNodeHome } from './node-config.js';
export type { NodeHome } from './node-config.js';
export { createToken, generateNodeKeys } from './rpc/index.js';
export type { ClientCredentials, Scope } from './rpc/index.js';
export type { Methods, NodeStatus } from './api.js';
