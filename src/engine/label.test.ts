// The one real-file round trip needs a temp folder; tests may use real files there.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ChecksumKind, type Disk, FileDisk, Prng, SimDisk, mpError, toHex } from '../lib/index.js';
import type { ErrorCode } from '../lib/index.js';
import {
  type PoolConfig,
  type Uberblock,
  decodeConfigArea,
  decodeUberblock,
  encodeConfigArea,
  encodeUberblock,
  parseLabelConfig,
  readPool,
  uberblockSlot,
  vdevConfigOf,
  writeLabels,
  writeUberblock,
} from './label.js';
import { encodeBlockPointer } from './blkptr.js';
import { type BlockPointer, BlockType, type Guid, type Txg, UBERBLOCK_RING_SLOTS, layout } from './types.js';
import { TopVdev, leafLayout } from './vdev.js';

const withCode = (code: ErrorCode): Error => expect.objectContaining({ name: 'MirrorpoolError', code }) as Error;
const LABEL = layout.labelBytes;
const MIB = 1024 * 1024;
const DISK_BYTES = 4 * LABEL + 2 * MIB;

function rootBp(t: number): BlockPointer {
  return {
    dvas: [{ vdev: 0, offset: t * 512, asize: 512 }],
    lsize: 512,
    psize: 512,
    type: BlockType.objset,
    level: 0,
    checksumKind: ChecksumKind.fletcher4,
    birth: t as Txg,
    fill: 1,
    checksum: new Uint8Array(32).fill(t & 0xff),
  };
}

function ub(t: number, poolGuid: bigint): Uberblock {
  return {
    txg: t as Txg,
    poolGuid: poolGuid as Guid,
    timestampMs: 1_767_225_600_000 + t * 5000,
    rootBp: rootBp(t),
    checkpointTxg: 0 as Txg,
  };
}

interface TestPool {
  disks: SimDisk[];
  vdevs: TopVdev[];
  config: PoolConfig;
}

/** A pool of a 2-way mirror (vdev 0) and, with `twoVdevs`, a plain disk (vdev 1). */
async function createPool(seed: number, options: { twoVdevs?: boolean; guidBase?: bigint; name?: string } = {}): Promise<TestPool> {
  const random = new Prng(seed);
  const base = options.guidBase ?? 1000n;
  const disks = Array.from({ length: options.twoVdevs === true ? 3 : 2 }, () => new SimDisk({ sizeBytes: DISK_BYTES, random: random.fork() }));
  const leaf = (i: number) => ({ disk: disks[i]!, guid: (base + 10n + BigInt(i)) as Guid, path: `/dev/sim${i}` });
  const vdevs = [new TopVdev({ index: 0, guid: (base + 1n) as Guid, children: [leaf(0), leaf(1)] })];
  if (options.twoVdevs === true) vdevs.push(new TopVdev({ index: 1, guid: (base + 2n) as Guid, children: [leaf(2)] }));
  const config: PoolConfig = {
    name: options.name ?? 'tank',
    poolGuid: base as Guid,
    version: layout.version,
    txg: 1 as Txg,
    vdevs: vdevs.map((v) => vdevConfigOf(v, 20)),
  };
  await writeLabels(vdevs, config, { initialize: true });
  return { disks, vdevs, config };
}

async function writeTxgs(pool: TestPool, from: number, to: number): Promise<void> {
  for (let t = from; t <= to; t++) await writeUberblock(pool.vdevs, ub(t, pool.config.poolGuid));
}

/** Leaf byte of uberblock slot `slot` in label `label` of `disk`. */
function slotByte(disk: Disk, label: number, slot: number): number {
  return leafLayout(disk.size()).labelOffsets[label]! + layout.labelConfigBytes + slot * layout.uberblockBytes;
}

describe('label codecs', () => {
  it('round-trips a config area and an uberblock slot', async () => {
    const pool = await createPool(1, { twoVdevs: true });
    const labelConfig = { ...pool.config, leafGuid: 1012n as Guid, topIndex: 1 };
    expect(decodeConfigArea(encodeConfigArea(labelConfig))).toEqual(labelConfig);
    const u = { ...ub(77, 5n), checkpointTxg: 60 as Txg };
    expect(decodeUberblock(encodeUberblock(u))).toEqual(u);
    expect(uberblockSlot(77 as Txg)).toBe(77 % UBERBLOCK_RING_SLOTS);
  });

  it('encodes a fixed uberblock and config to fixed bytes (golden vectors)', () => {
    const fixed: Uberblock = {
      txg: 300 as Txg,
      poolGuid: 0x0123456789abcdefn as Guid,
      timestampMs: 1_767_225_600_000,
      checkpointTxg: 250 as Txg,
      rootBp: { ...rootBp(300), dvas: [{ vdev: 1, offset: 1048576, asize: 4096 }], lsize: 4096, psize: 4096, checksum: new Uint8Array(32).fill(0xab) },
    };
    const slot = encodeUberblock(fixed);
    expect(toHex(slot.subarray(0, 48))).toBe(
      '4d50554245524200' + '01000000' + '00000000' + '2c01000000000000' + 'efcdab8967452301' + '00a8da769b010000' + 'fa00000000000000',
    );
    expect(toHex(slot.subarray(48, 176))).toBe(toHex(encodeBlockPointer(fixed.rootBp)));
    expect(slot.subarray(176, 992).every((b) => b === 0)).toBe(true);
    expect(toHex(slot.subarray(992))).toBe('d0895b1d906b78ac0a53541e1a2c7b0995d210928a1ba806bad7a599ecf5b74f');
    const area = encodeConfigArea({ ...configOf(7n, 8n, 9n), leafGuid: 9n as Guid, topIndex: 0 });
    const json =
      '{"name":"tank","poolGuid":"7","version":1,"txg":2,"vdevs":[{"index":0,"guid":"8","kind":"disk","metaslabShift":20,' +
      '"asizeBytes":2097152,"children":[{"guid":"9","path":"/dev/a"}]}],"leafGuid":"9","topIndex":0}';
    expect(toHex(area.subarray(0, 64))).toBe(
      '4d504c4142454c00' + '01000000' + 'cf000000' + '4f7ce8edc0b7ea471f6d3c953f16c75c92af09b96cfaed9d0c4ab355d55e455c' + '00'.repeat(16),
    );
    expect(new TextDecoder().decode(area.subarray(64, 64 + json.length))).toBe(json);
    expect(area.subarray(64 + json.length).every((b) => b === 0)).toBe(true);
  });

  it('refuses a config area or uberblock with any flipped bit', () => {
    const area = encodeConfigArea({ ...configOf(), leafGuid: 11n as Guid, topIndex: 0 });
    const slot = encodeUberblock(ub(9, 5n));
    const random = new Prng(2);
    for (let i = 0; i < 200; i++) {
      const a = area.slice();
      const at = random.int(200);
      a[at]! ^= 1 << random.int(8);
      expect(() => decodeConfigArea(a), `config byte ${at}, seed 2`).toThrow(withCode('EPROTO'));
      const s = slot.slice();
      const sat = random.int(layout.uberblockBytes);
      s[sat]! ^= 1 << random.int(8);
      expect(() => decodeUberblock(s), `uberblock byte ${sat}, seed 2`).toThrow(withCode('EPROTO'));
    }
    expect(() => decodeConfigArea(new Uint8Array(layout.labelConfigBytes))).toThrow(withCode('EPROTO'));
    expect(() => decodeUberblock(new Uint8Array(layout.uberblockBytes))).toThrow(withCode('EPROTO'));
  });

  it('validates decoded configs strictly', () => {
    const good: Record<string, unknown> = { ...(jsonOf(configOf()) as Record<string, unknown>), leafGuid: '11', topIndex: 0 };
    expect(parseLabelConfig(good).name).toBe('tank');
    const vdev = (good['vdevs'] as Record<string, unknown>[])[0]!;
    const bad: unknown[] = [
      { ...good, extra: 1 },
      { ...good, name: '' },
      { ...good, name: 'a/b' },
      { ...good, poolGuid: '0' },
      { ...good, poolGuid: '18446744073709551616' },
      { ...good, poolGuid: 5 },
      { ...good, version: 99 },
      { ...good, txg: -1 },
      { ...good, txg: 1.5 },
      { ...good, vdevs: [] },
      { ...good, leafGuid: '999' },
      { ...good, topIndex: 1 },
      { ...good, vdevs: [{ ...vdev, index: 1 }] },
      { ...good, vdevs: [{ ...vdev, kind: 'raidz' }] },
      { ...good, vdevs: [{ ...vdev, kind: 'mirror' }] },
      { ...good, vdevs: [{ ...vdev, asizeBytes: 1000 }] },
      { ...good, vdevs: [{ ...vdev, metaslabShift: 99 }] },
      { ...good, vdevs: [{ ...vdev, guid: '1' }] }, // the pool's own guid
      { ...good, vdevs: [{ ...vdev, children: [{ guid: '11' }] }] },
      { ...good, vdevs: [{ ...vdev, children: [{ guid: '11', path: 7 }] }] },
      [],
      null,
      'tank',
    ];
    for (const [i, b] of bad.entries()) expect(() => parseLabelConfig(b), `case ${i}`).toThrow(withCode('EPROTO'));
  });

  it('refuses to write a config that import would refuse', async () => {
    const pool = await createPool(3);
    await expect(writeLabels(pool.vdevs, { ...pool.config, name: 'no spaces' })).rejects.toEqual(withCode('EINVAL'));
  });
});

function configOf(poolGuid = 1n, vdevGuid = 2n, leafGuid = 11n): PoolConfig {
  return {
    name: 'tank',
    poolGuid: poolGuid as Guid,
    version: layout.version,
    txg: 2 as Txg,
    vdevs: [
      { index: 0, guid: vdevGuid as Guid, kind: 'disk', metaslabShift: 20, asizeBytes: 2 * MIB, children: [{ guid: leafGuid as Guid, path: '/dev/a' }] },
    ],
  };
}

function jsonOf(c: PoolConfig): unknown {
  return JSON.parse(JSON.stringify(c, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)));
}

describe('import from labels', () => {
  it('finds the newest of 300 uberblocks after the ring wrapped', async () => {
    const pool = await createPool(4, { twoVdevs: true });
    await writeTxgs(pool, 1, 300);
    const found = await readPool([pool.disks[2]!, pool.disks[0]!, pool.disks[1]!]);
    expect(found.config).toEqual(pool.config);
    expect(found.uberblock).toEqual(ub(300, pool.config.poolGuid));
    expect(found.newestTxgOnDisk).toBe(300);
    const txgs = new Set(found.uberblocks.map((u) => u.uberblock.txg));
    expect(txgs.size).toBe(UBERBLOCK_RING_SLOTS);
    expect(Math.min(...txgs)).toBe(300 - UBERBLOCK_RING_SLOTS + 1);
    expect(found.uberblocks.length).toBe(UBERBLOCK_RING_SLOTS * 4 * 3);
    expect(found.vdevs.map((v) => [v.index, v.guid, v.children.length])).toEqual([
      [0, 1001n, 2],
      [1, 1002n, 1],
    ]);
  });

  it('falls back to the previous txg when the newest uberblock is corrupt on every label', async () => {
    const pool = await createPool(5);
    await writeTxgs(pool, 1, 10);
    for (const d of pool.disks) for (let l = 0; l < 4; l++) d.flipBit(slotByte(d, l, uberblockSlot(10 as Txg)) + 20, 2);
    expect((await readPool(pool.disks)).uberblock.txg).toBe(9);
  });

  it('uses the uberblock found on any single good label', async () => {
    const pool = await createPool(6);
    await writeTxgs(pool, 1, 10);
    for (const [i, d] of pool.disks.entries()) {
      for (let l = 0; l < 4; l++) if (i !== 1 || l !== 3) d.flipBit(slotByte(d, l, uberblockSlot(10 as Txg)) + 500, 0);
    }
    expect((await readPool(pool.disks)).uberblock.txg).toBe(10);
  });

  it('reads the config from another label when one is corrupt', async () => {
    const pool = await createPool(7);
    await writeTxgs(pool, 1, 3);
    for (const d of pool.disks) for (const l of [0, 1, 2]) d.flipBit(leafLayout(d.size()).labelOffsets[l]! + 100, 1);
    const found = await readPool(pool.disks);
    expect(found.config).toEqual(pool.config);
    expect(found.uberblock.txg).toBe(3);
  });

  it('takes the config with the highest txg', async () => {
    const pool = await createPool(8);
    await writeTxgs(pool, 1, 4);
    const newer = { ...pool.config, txg: 4 as Txg, name: 'renamed' };
    await writeLabels(pool.vdevs.slice(0, 1), newer);
    expect((await readPool(pool.disks)).config).toEqual(newer);
  });

  it('imports an older uberblock with maxTxg, and says ENOENT when none is that old', async () => {
    const pool = await createPool(9);
    await writeTxgs(pool, 1, 250);
    const found = await readPool(pool.disks, { maxTxg: 200 });
    expect(found.uberblock.txg).toBe(200);
    expect(found.newestTxgOnDisk).toBe(250);
    await expect(readPool(pool.disks, { maxTxg: 30 })).rejects.toEqual(withCode('ENOENT'));
    await expect(readPool(pool.disks, { maxTxg: -1 })).rejects.toEqual(withCode('EINVAL'));
  });

  it('says EPROTO for disks that hold no pool', async () => {
    const random = new Prng(10);
    const noise = new SimDisk({ sizeBytes: DISK_BYTES, random });
    const bytes = new Uint8Array(DISK_BYTES);
    random.fill(bytes);
    await noise.write(0, bytes);
    await expect(readPool([noise])).rejects.toEqual(withCode('EPROTO'));
    await expect(readPool([new SimDisk({ sizeBytes: DISK_BYTES, random })])).rejects.toEqual(withCode('EPROTO'));
    await expect(readPool([new SimDisk({ sizeBytes: 512, random })])).rejects.toEqual(withCode('EPROTO'));
    const pool = await createPool(11);
    await expect(readPool(pool.disks)).rejects.toEqual(withCode('EPROTO')); // labels but no uberblock yet
  });

  it('says EPROTO for a truncated vdev', async () => {
    const pool = await createPool(12);
    await writeTxgs(pool, 1, 2);
    await pool.disks[1]!.resize(DISK_BYTES - LABEL);
    const err = await readPool(pool.disks).catch((e: unknown) => e);
    expect(err).toEqual(withCode('EPROTO'));
    expect(err).toMatchObject({ details: { leafGuid: '1011', path: '/dev/sim1' } });
  });

  it('says ENOENT naming the missing vdev and its last path', async () => {
    const pool = await createPool(13, { twoVdevs: true });
    await writeTxgs(pool, 1, 2);
    const err = await readPool(pool.disks.slice(0, 2)).catch((e: unknown) => e);
    expect(err).toEqual(withCode('ENOENT'));
    expect(err).toMatchObject({ details: { vdev: 1, leafGuid: '1012', path: '/dev/sim2' } });
    await expect(readPool([pool.disks[0]!, pool.disks[2]!])).rejects.toEqual(withCode('ENOENT'));
  });

  it('says EINVAL when the disks belong to different pools or one disk is given twice', async () => {
    const a = await createPool(14);
    const b = await createPool(15, { guidBase: 5000n, name: 'other' });
    await writeTxgs(a, 1, 2);
    await writeTxgs(b, 1, 2);
    const err = await readPool([a.disks[0]!, a.disks[1]!, b.disks[0]!]).catch((e: unknown) => e);
    expect(err).toEqual(withCode('EINVAL'));
    expect(err).toMatchObject({ details: { pools: [{ name: 'tank' }, { name: 'other' }] } });
    await expect(readPool([a.disks[0]!, a.disks[0]!, a.disks[1]!])).rejects.toEqual(withCode('EINVAL'));
  });

  it('round-trips a pool through real files', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mirrorpool-label-'));
    try {
      const paths = [join(dir, 'a'), join(dir, 'b')];
      const files = await Promise.all(paths.map((p) => FileDisk.open(p, { createBytes: DISK_BYTES })));
      const vdevs = [new TopVdev({ index: 0, guid: 2n as Guid, children: files.map((disk, i) => ({ disk, guid: BigInt(10 + i) as Guid, path: paths[i]! })) })];
      const config: PoolConfig = { name: 'files', poolGuid: 1n as Guid, version: layout.version, txg: 1 as Txg, vdevs: [vdevConfigOf(vdevs[0]!, 20)] };
      await writeLabels(vdevs, config, { initialize: true });
      await writeUberblock(vdevs, ub(1, 1n));
      await writeUberblock(vdevs, ub(2, 1n));
      await Promise.all(files.map((f) => f.close()));
      const reopened = await Promise.all(paths.map((p) => FileDisk.open(p)));
      const found = await readPool(reopened.reverse());
      expect(found.config).toEqual(config);
      expect(found.uberblock).toEqual(ub(2, 1n));
      await Promise.all(reopened.map((f) => f.close()));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

/** Cuts power after `opsLeft` writes/syncs: every later I/O fails as the device went away. */
class PowerCut {
  constructor(public opsLeft: number) {}
  wrap(inner: SimDisk): Disk {
    const spend = (): void => {
      if (this.opsLeft-- <= 0) throw mpError('EIO', 'power lost');
    };
    return {
      size: () => inner.size(),
      read: (o, l) => (this.opsLeft <= 0 ? Promise.reject(mpError('EIO', 'power lost')) : inner.read(o, l)),
      write: async (o, d) => (spend(), inner.write(o, d)),
      writev: async (o, parts) => (spend(), inner.writev(o, parts)),
      writeDurable: async (o, d) => (spend(), inner.writeDurable(o, d)),
      sync: async () => (spend(), inner.sync()),
      resize: (b) => inner.resize(b),
      close: () => inner.close(),
    };
  }
}

describe('label writes on failing devices', () => {
  it('writes an uberblock while one leaf fails, and fails with EIO when every leaf does', async () => {
    const pool = await createPool(30);
    await writeTxgs(pool, 1, 2);
    pool.disks[0]!.injectFault({ op: 'write', effect: { kind: 'eio' } });
    await writeUberblock(pool.vdevs, ub(3, pool.config.poolGuid));
    expect(pool.vdevs[0]!.stats().children[0]).toMatchObject({ faulted: true, writeErrors: 4 });
    expect((await readPool(pool.disks)).uberblock.txg).toBe(3);
    pool.disks[1]!.injectFault({ op: 'sync', effect: { kind: 'eio' } });
    await expect(writeUberblock(pool.vdevs, ub(4, pool.config.poolGuid))).rejects.toEqual(withCode('EIO'));
  });

  it('keeps either the old or the new config when a config rewrite is cut short', async () => {
    for (let cutAt = 0; cutAt <= 6; cutAt++) {
      const pool = await createPool(40 + cutAt);
      await writeTxgs(pool, 1, 3);
      const power = new PowerCut(cutAt);
      const wrapped = [
        new TopVdev({
          index: 0,
          guid: pool.vdevs[0]!.guid,
          children: pool.vdevs[0]!.children.map((c, i) => ({ disk: power.wrap(pool.disks[i]!), guid: c.guid, path: c.path })),
        }),
      ];
      const newer = { ...pool.config, txg: 3 as Txg, name: 'renamed' };
      await writeLabels(wrapped, newer).catch((e: unknown) => expect(e).toEqual(withCode('EIO')));
      for (const d of pool.disks) d.crash('random');
      const found = await readPool(pool.disks);
      expect([pool.config, newer], `cut at ${cutAt}`).toContainEqual(found.config);
      expect(found.uberblock.txg, `cut at ${cutAt}`).toBe(3);
    }
  });
});

describe('crash during an uberblock write', () => {
  it('imports either the new or the previous uberblock at every crash point', async () => {
    // 3 leaves x 2 phases x (2 label writes + 1 sync) I/Os; cut before each and after the last.
    const ioCount = 3 * 2 * 3;
    const seen = new Set<number>();
    for (const seed of [21, 22, 23, 24]) {
      for (let cutAt = 0; cutAt <= ioCount; cutAt++) {
        const pool = await createPool(seed * 100 + cutAt, { twoVdevs: true });
        await writeTxgs(pool, 1, 5);
        const power = new PowerCut(cutAt);
        const wrapped = pool.config.vdevs.map(
          (v) =>
            new TopVdev({
              index: v.index,
              guid: v.guid,
              children: pool.vdevs[v.index]!.children.map((c, i) => ({ disk: power.wrap(pool.disks[Number(c.guid - 1010n)]!), guid: c.guid, path: v.children[i]!.path })),
            }),
        );
        const outcome = await writeUberblock(wrapped, ub(6, pool.config.poolGuid)).then(
          () => 'written',
          (e: unknown) => e,
        );
        for (const d of pool.disks) d.crash('random');
        const found = await readPool(pool.disks);
        const where = `seed ${seed}, cut at ${cutAt}`;
        expect([5, 6], where).toContain(found.uberblock.txg);
        seen.add(found.uberblock.txg);
        if (outcome === 'written') expect(found.uberblock.txg, where).toBe(6);
        else expect(outcome, where).toEqual(withCode('EIO'));
        if (cutAt === ioCount) expect(outcome, where).toBe('written');
        expect(found.config, where).toEqual(pool.config);
      }
    }
    expect([...seen].sort()).toEqual([5, 6]);
  });
});
