import { Store } from '../engine/store.js';
import type { OpenOptions } from '../engine/store-types.js';

/** `read` opens read-only and takes no lock, so it works beside a running writer. */
export type Access = 'read' | 'write';

/** Open options a command may add to the ones its access implies. */
interface SessionOptions {
  grants?: NonNullable<OpenOptions['grants']>;
  /** `false`: no background GC cycles, so the command's own cycles are the only ones. */
  autoGc?: boolean;
}

/** Open the image, run `use`, and always close it. */
export async function withStore<T>(image: string, access: Access, use: (store: Store) => Promise<T>, options: SessionOptions = {}): Promise<T> {
  const store = await Store.open(image, { ...options, ...(access === 'read' ? { readOnly: true } : {}) });
  try {
    return await use(store);
  } finally {
    await store.close();
  }
}
