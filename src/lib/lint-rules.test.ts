// Proves the layering and no-real-I/O lint rules fire: each case lints a probe file placed (by
// path only) inside a layer and expects the named rule to report it.
import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';

const eslint = new ESLint({ cwd: process.cwd() });

async function rulesFired(path: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath: path });
  return (result?.messages ?? []).map((m) => m.ruleId ?? 'parse-error');
}

describe('lint rules', () => {
  it('rejects an import against the layer order', async () => {
    const fired = await rulesFired('src/engine/x.lint-probe.ts', "import { A } from '../cluster/index.js';\nexport const a = A;\n");
    expect(fired).toContain('no-restricted-imports');
  });

  it('rejects importing another layer past its index', async () => {
    const fired = await rulesFired('src/sync/x.lint-probe.ts', "import { B } from '../engine/dmu.js';\nexport const b = B;\n");
    expect(fired).toContain('no-restricted-imports');
  });

  it('accepts an import down the layer order through the index', async () => {
    const fired = await rulesFired('src/cluster/x.lint-probe.ts', "import { C } from '../sync/index.js';\nexport const c = C;\n");
    expect(fired).toEqual([]);
  });

  it('rejects node:fs, ws and timers inside engine, sync and cluster', async () => {
    for (const mod of ['node:fs', 'fs/promises', 'node:net', 'ws', 'node:timers']) {
      const fired = await rulesFired('src/sync/x.lint-probe.ts', `import * as m from '${mod}';\nexport const x = m;\n`);
      expect(fired, mod).toContain('no-restricted-imports');
    }
  });

  it('rejects Date, setTimeout and Math.random inside the core', async () => {
    const code = 'export const a = Date.now();\nexport const b = Math.random();\nsetTimeout(() => 0, 1);\n';
    const fired = await rulesFired('src/cluster/x.lint-probe.ts', code);
    expect(fired.filter((r) => r === 'no-restricted-globals')).toHaveLength(2);
    expect(fired).toContain('no-restricted-properties');
  });

  it('allows real I/O in lib and node', async () => {
    for (const layer of ['lib', 'node']) {
      const fired = await rulesFired(`src/${layer}/x.lint-probe.ts`, "import { open } from 'node:fs/promises';\nexport const o = open;\n");
      expect(fired, layer).toEqual([]);
    }
  });
});
