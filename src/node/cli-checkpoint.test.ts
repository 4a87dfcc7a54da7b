// `pool checkpoint`, `pool checkpoint --discard`, `pool import --rewind-to-checkpoint` and the
// checkpoint line of `pool status`, end to end through main() on real vdev files.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Prng } from '../lib/index.js';
import { cliWorkspace, expectError, tempRoot } from './cli-test-support.js';

const temp = tempRoot('mirrorpool-cli-checkpoint-');

const workspace = (): ReturnType<typeof cliWorkspace> => cliWorkspace(temp);

describe('mirrorpool pool checkpoint', () => {
  it('takes a checkpoint, shows it, refuses a second one, and rewinds to it at import', async () => {
    const w = await workspace();
    const ok = w.ok;
    const file = join(w.dir, 'data.bin');
    const data = new Uint8Array(300_000);
    new Prng(7).fill(data);
    await writeFile(file, data);
    await ok('pool', 'create', '--size', '64M', 'tank', join(w.dir, 'a.img'));
    await ok('dataset', 'create', 'tank/ds');
    await ok('put', 'tank/ds', 'kept', file);
    expect((await ok('pool', 'status', 'tank')).out).toMatch(/^checkpoint: none$/m);
    expect((await ok('pool', 'checkpoint', 'tank')).out).toMatch(/^checkpoint of tank at txg \d+$/m);
    // Every command imports and exports the pool: the MOS blocks those txgs replace stay held.
    expect((await ok('pool', 'status', 'tank')).out).toMatch(/^checkpoint: txg \d+, created \S+, holding \S+$/m);
    expectError(await w.cli('pool', 'checkpoint', 'tank'), 1, 'EEXIST');
    // Later changes: the data goes, a new dataset comes; the checkpoint now holds space.
    await ok('dataset', 'destroy', '-r', 'tank/ds');
    await ok('dataset', 'create', 'tank/later');
    expect((await ok('pool', 'status', 'tank')).out).toMatch(/^checkpoint: txg \d+, .*holding [1-9][0-9.]*[KM]$/m);
    const status = JSON.parse((await ok('pool', 'status', '--json', 'tank')).out) as { checkpoint: { state: string; heldBytes: number } }[];
    expect(status[0]?.checkpoint.state).toBe('active');
    expect(status[0]?.checkpoint.heldBytes).toBeGreaterThan(data.length);
    // A rewind needs the pool exported and named.
    expectError(await w.cli('pool', 'import', '--dir', w.dir, '--rewind-to-checkpoint', 'tank'), 1, 'EEXIST');
    await ok('pool', 'export', 'tank');
    expectError(await w.cli('pool', 'import', '--dir', w.dir, '--rewind-to-checkpoint'), 2, 'EINVAL');
    await ok('pool', 'import', '--dir', w.dir, '--rewind-to-checkpoint', 'tank');
    await ok('get', 'tank/ds', 'kept', '-o', join(w.dir, 'back.bin'));
    expect((await readFile(join(w.dir, 'back.bin'))).equals(Buffer.from(data))).toBe(true);
    expect((await ok('dataset', 'list')).out).not.toMatch(/later/);
    expect((await ok('pool', 'status', 'tank')).out).toMatch(/^checkpoint: none$/m);
    expectError(await w.cli('pool', 'checkpoint', '--discard', 'tank'), 1, 'ENOENT');
    await ok('pool', 'export', 'tank');
    expectError(await w.cli('pool', 'import', '--dir', w.dir, '--rewind-to-checkpoint', 'tank'), 1, 'ENOENT');
  });

  it('discards a checkpoint and gives its space back; attach and reguid wait for it', async () => {
    const w = await workspace();
    const ok = w.ok;
    const file = join(w.dir, 'data.bin');
    await writeFile(file, new Uint8Array(500_000).fill(7));
    await ok('pool', 'create', '--size', '64M', 'tank', join(w.dir, 'a.img'));
    await ok('dataset', 'create', 'tank/ds');
    await ok('put', 'tank/ds', 'k', file);
    const allocated = async (): Promise<number> => (JSON.parse((await ok('pool', 'status', '--json', 'tank')).out) as { allocatedBytes: number }[])[0]?.allocatedBytes ?? -1;
    const before = await allocated();
    await ok('pool', 'checkpoint', 'tank');
    await ok('dataset', 'destroy', 'tank/ds');
    // The 500 KB of data stay allocated; the pool's metadata moves by a few KiB either way.
    expect(await allocated(), 'the destroyed data stays allocated').toBeGreaterThan(before - 100_000);
    expectError(await w.cli('pool', 'reguid', 'tank'), 1, 'EBUSY');
    expectError(await w.cli('pool', 'attach', '--size', '64M', 'tank', join(w.dir, 'a.img'), join(w.dir, 'b.img')), 1, 'EBUSY');
    expect((await ok('pool', 'checkpoint', '--discard', 'tank')).out).toMatch(/^discarded the checkpoint of tank: [0-9.]+[KM] given back$/m);
    expect((await ok('pool', 'status', 'tank')).out).toMatch(/^checkpoint: none$/m);
    // Freed space becomes free a few txgs later (each snapshot makes one).
    for (let i = 0; i < 3; i++) await ok('snapshot', `tank@s${i}`);
    expect(await allocated()).toBeLessThan(before - 400_000);
    await ok('pool', 'reguid', 'tank');
  });
});
