import { Store } from '../engine/store.js';

/** `read` opens read-only and takes no lock, so it works beside a running writer. */
export type Access = 'read' | 'write';

/** Open the image, run `use`, and always close it. */
export async function withStore<T>(image: string, access: Access, use: (store: Store) => Promise<T>): Promise<T> {
  const store = await Store.open(image, access === 'read' ? { readOnly: true } : {});
  try {
    return await use(store);
  } finally {
    await store.close();
  }
}
