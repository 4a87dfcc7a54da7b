// The shipped Prometheus files stay valid: the scrape config (with its rule files) loads, the
// alert rules parse, and every alert fires and stays quiet where alerts.test.yml says. Runs the
// real promtool (CI installs the `prometheus` Debian package for it).
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

function promtool(args: readonly string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('promtool', args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (b: Buffer) => (output += b.toString()));
    child.stderr.on('data', (b: Buffer) => (output += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
  });
}

describe('ops/prometheus', () => {
  it('has a scrape config promtool accepts, rule files and credentials file included', async () => {
    const r = await promtool(['check', 'config', 'ops/prometheus/prometheus.yml']);
    expect(r.output).toContain('SUCCESS');
    expect(r.code, r.output).toBe(0);
  });

  it('has alert rules promtool accepts', async () => {
    const r = await promtool(['check', 'rules', 'ops/prometheus/alerts.yml']);
    expect(r.output).toMatch(/SUCCESS: \d+ rules found/);
    expect(r.code, r.output).toBe(0);
  });

  it('fires each alert where it should and nowhere else', async () => {
    const r = await promtool(['test', 'rules', 'ops/prometheus/alerts.test.yml']);
    expect(r.code, r.output).toBe(0);
  });

  it('gives every alert a severity, a runbook section and a firing and a quiet test case', async () => {
    const text = (path: string): Promise<string> => readFile(join(ROOT, path), 'utf8');
    const [rules, cases, readme] = await Promise.all([text('ops/prometheus/alerts.yml'), text('ops/prometheus/alerts.test.yml'), text('ops/README.md')]);
    const alerts = rules.split(/^ {6}- alert: /m).slice(1);
    expect(alerts.length).toBeGreaterThan(0);
    // Each evaluation in the cases file: its alert name, and whether it expects alerts.
    const evals = cases.split(/- eval_time: /).slice(1).map((e) => ({ name: /alertname: (\w+)/.exec(e)?.[1], quiet: /exp_alerts: \[\]/.test(e) }));
    for (const block of alerts) {
      const name = block.split('\n')[0]!.trim();
      expect(block, name).toMatch(/severity: (critical|warning)\n/);
      expect(block, name).toContain(`runbook_url: "ops/README.md#${name.toLowerCase()}"`);
      expect(readme, name).toContain(`\n### ${name}\n`);
      expect(evals.some((e) => e.name === name && e.quiet), `${name} has a quiet case`).toBe(true);
      expect(evals.some((e) => e.name === name && !e.quiet), `${name} has a firing case`).toBe(true);
    }
  });
});
