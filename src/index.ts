export { Store } from './engine/store.js';
export type { CreateOptions, ListOptions, ListPage, OpenOptions, OpenReport, StoreStat, SubjectStat } from './engine/store.js';
export { StatefsError, ERROR_CODES, isStatefsError } from './errors.js';
export type { ErrorCode } from './errors.js';
export type { BlockDevice } from './device/device.js';
export { MemoryDevice } from './device/memory-device.js';
export { FileDevice } from './device/file-device.js';
export { Transaction } from './engine/transaction.js';
export type { TxnLimits } from './engine/transaction.js';
