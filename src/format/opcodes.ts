/**
 * Record opcodes. 0x01–0x03 are the v1 set, 0x10–0x14 the v2 transaction set; 0x20 on are v3.
 * Byte layouts of each record's key and value are in docs/storage/statefs-v3.md.
 */
export const Op = {
  PUT: 0x01,
  DELETE: 0x02,
  /** v1 no-op; accepted and ignored. */
  CHECKPOINT: 0x03,
  PREPARE: 0x10,
  PAYLOAD: 0x11,
  COMMIT: 0x12,
  ABORT: 0x13,
  /** Ends every flush batch; its value is the batch's first byte offset in the segment. */
  SYNC: 0x14,
  /** First record of every v3 segment. */
  SEGMENT: 0x20,
  SNAPSHOT: 0x21,
  SNAPDIGEST: 0x22,
  SNAPDEL: 0x23,
  RESTORE: 0x24,
  MOUNT: 0x25,
  UMOUNT: 0x26,
  /** GC relocation of a live or snapshot-held value. */
  RELOC: 0x27,
  /** Written by the v1 upgrade before anything else: the v1 journal it upgrades (see meta-records.ts). */
  UPGRADE: 0x28,
  /** Several PUTs of one subject in one record, written by `putMany` (see put-run.ts). */
  PUTRUN: 0x29,
  /** One chunk of an index checkpoint. */
  CKPT: 0x30,
} as const;
