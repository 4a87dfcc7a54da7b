// The few WebAssembly globals fletcher4.ts uses (Node provides them; @types/node does not
// declare them, and the DOM lib would bring in a browser's globals).
declare namespace WebAssembly {
  class Module {
    constructor(bytes: Uint8Array);
  }
  class Instance {
    constructor(module: Module, imports?: Record<string, Record<string, unknown>>);
    readonly exports: Record<string, unknown>;
  }
  class Memory {
    readonly buffer: ArrayBuffer;
  }
}
