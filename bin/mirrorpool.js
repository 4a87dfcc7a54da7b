#!/usr/bin/env node
// The installed command: runs the compiled CLI (npm install builds it through `prepare`).
import { main } from '../dist/src/node/cli.js';

process.exitCode = await main(process.argv.slice(2));
