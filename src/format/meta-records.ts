import { getU64, setU64, view } from './bytes.js';

/*
 * Snapshot and mount records (v3). Keys are `<subject> NUL <name>` for snapshot records and
 * `<caller> NUL <mount path>` for mount records. Values, little-endian:
 *
 * SNAPSHOT   (0x21)  snap_id u64                      the subject's live state at this point in the log
 * SNAPDIGEST (0x22)  snap_id u64 | sha256 (32 bytes)  content digest, written once computed
 * SNAPDEL    (0x23)  snap_id u64
 * RESTORE    (0x24)  snap_id u64                      live state := that snapshot
 * MOUNT      (0x25)  snap_id u64 | owner NUL name
 * UMOUNT     (0x26)  (empty)
 *
 * snap_id is a store-wide creation sequence number (1, 2, ...), never reused.
 *
 * RELOC      (0x27)  key: subject NUL key   value: from_segment u32 | from_offset u32 | value bytes
 *                    GC moved the value of the record at (from_segment, from_offset) here; every
 *                    tree (live or snapshot) holding that record now reads this one.
 *
 * UPGRADE    (0x28)  key: (empty)   value: v1_end u64 | v1_crc u32
 *                    The v1 upgrade's first batch, flushed before its other records: the v1
 *                    journal it upgrades is bytes [0, v1_end) of the device, whose CRC-32C is
 *                    v1_crc. Lets the open of an upgrade cut short tell the upgrade's own records
 *                    (whose values may hold whole v1 records) from damage to the v1 journal.
 */
export const DIGEST_BYTES = 32;

export function encodeSnapId(id: number): Uint8Array {
  const out = new Uint8Array(8);
  setU64(view(out), 0, id);
  return out;
}

export function decodeSnapId(value: Uint8Array): number | undefined {
  return value.length === 8 ? getU64(view(value), 0) : undefined;
}

export function encodeSnapDigest(id: number, digest: Uint8Array): Uint8Array {
  const out = new Uint8Array(8 + DIGEST_BYTES);
  setU64(view(out), 0, id);
  out.set(digest, 8);
  return out;
}

export function decodeSnapDigest(value: Uint8Array): { id: number; digest: Uint8Array } | undefined {
  if (value.length !== 8 + DIGEST_BYTES) return undefined;
  return { id: getU64(view(value), 0), digest: value.slice(8) };
}

export interface MountTarget {
  snapId: number;
  owner: string;
  name: string;
}

export function encodeMount(m: MountTarget): Uint8Array {
  const tail = Buffer.from(`${m.owner}\0${m.name}`, 'latin1');
  const out = new Uint8Array(8 + tail.length);
  setU64(view(out), 0, m.snapId);
  out.set(tail, 8);
  return out;
}

export function decodeMount(value: Uint8Array): MountTarget | undefined {
  if (value.length < 11) return undefined;
  const [owner, name, ...rest] = Buffer.from(value.subarray(8)).toString('latin1').split('\0');
  if (owner === undefined || name === undefined || owner === '' || name === '' || rest.length > 0) return undefined;
  return { snapId: getU64(view(value), 0), owner, name };
}

export interface Relocation {
  segment: number;
  offset: number;
  value: Uint8Array;
}

export function encodeReloc(r: Relocation): Uint8Array {
  const out = new Uint8Array(8 + r.value.length);
  const v = view(out);
  v.setUint32(0, r.segment, true);
  v.setUint32(4, r.offset, true);
  out.set(r.value, 8);
  return out;
}

export function decodeReloc(value: Uint8Array): Relocation | undefined {
  if (value.length < 8) return undefined;
  const v = view(value);
  return { segment: v.getUint32(0, true), offset: v.getUint32(4, true), value: value.subarray(8) };
}

export interface UpgradeMark {
  /** Where the v1 journal ends. */
  v1End: number;
  /** CRC-32C of the v1 journal's bytes. */
  v1Crc: number;
}

export const UPGRADE_VALUE_LENGTH = 12;

export function encodeUpgrade(m: UpgradeMark): Uint8Array {
  const out = new Uint8Array(UPGRADE_VALUE_LENGTH);
  const v = view(out);
  setU64(v, 0, m.v1End);
  v.setUint32(8, m.v1Crc, true);
  return out;
}

export function decodeUpgrade(value: Uint8Array): UpgradeMark | undefined {
  if (value.length !== UPGRADE_VALUE_LENGTH) return undefined;
  const v = view(value);
  return { v1End: getU64(v, 0), v1Crc: v.getUint32(8, true) };
}
