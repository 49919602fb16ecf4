import type { BlockDevice } from '../device/device.js';
import { StatefsError } from '../errors.js';
import { Op } from '../format/opcodes.js';
import { decodeRecord, type DecodedRecord } from '../format/record.js';
import { decodeReloc } from '../format/meta-records.js';
import { segmentOffset } from '../format/superblock.js';
import { PAYLOAD_PUT, decodePayload } from '../format/txn-records.js';
import type { Entry } from './entry.js';

/** The value bytes a PUT or a transaction's PAYLOAD record holds, or undefined for any other record. */
export function valueOfRecord(record: DecodedRecord): Uint8Array | undefined {
  if (record.opcode === Op.PUT) return record.value;
  if (record.opcode === Op.RELOC) return decodeReloc(record.value)?.value;
  if (record.opcode !== Op.PAYLOAD) return undefined;
  const chunk = decodePayload(record.value);
  return chunk?.kind === PAYLOAD_PUT ? chunk.data : undefined;
}

/** Read an entry's value from its records on the device, checking each record's CRC. */
export async function readEntryValue(device: BlockDevice, segmentSize: number, entry: Entry): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for (const x of entry.extents) {
    const at = segmentOffset(x.segment, segmentSize) + x.offset;
    const buf = await device.read(at, x.length);
    const r = decodeRecord(buf, 0);
    const value = r.ok ? valueOfRecord(r.record) : undefined;
    if (value === undefined) throw StatefsError.EINTEGRITY(`record holding a value is damaged (${r.ok ? 'wrong kind' : r.fault})`, { op: 'read', offset: at });
    parts.push(value);
  }
  return parts.length === 1 && parts[0] !== undefined ? parts[0].slice() : new Uint8Array(Buffer.concat(parts));
}
