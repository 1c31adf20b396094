/**
 * The one way this project replaces a file: write a temporary file beside it, fsync, rename.
 * Readers (a viewer refreshing curves.png, a resume, another host) see the old or the new
 * contents, never half a file, and a crash leaves the old file whole.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface AtomicWriteOptions {
  /** File mode of the new file, set before any byte is written (0o600 for secrets). */
  mode?: number;
}

/** The temporary file beside `file` that becomes it (one per process and file name). */
export function temporaryPathFor(file: string): string {
  return path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
}

/** Writes `bytes` to `file` atomically; the temporary file is removed if anything fails. */
export function writeAtomic(file: string, bytes: Buffer | Uint8Array | string, options: AtomicWriteOptions = {}): void {
  const tmp = temporaryPathFor(file);
  const fd = fs.openSync(tmp, 'w', options.mode ?? 0o666);
  try {
    try {
      // The umask can only remove bits from the requested mode; this makes it exact.
      if (options.mode !== undefined) fs.fchmodSync(fd, options.mode);
      fs.writeFileSync(fd, bytes); // all of it: one writeSync may write less
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}

/**
 * writeAtomic without blocking the event loop (the writes and fsync run on libuv's threads),
 * for large files written while work goes on: `chunks` one after the other, which must not
 * change until the promise settles.
 */
export async function writeAtomicAsync(file: string, chunks: readonly Uint8Array[]): Promise<void> {
  const tmp = temporaryPathFor(file);
  const handle = await fs.promises.open(tmp, 'w');
  try {
    // Each writeFile writes all of its chunk from the current position, the end of the last.
    for (const chunk of chunks) await handle.writeFile(chunk);
    await handle.sync();
    await handle.close();
    await fs.promises.rename(tmp, file);
  } catch (err) {
    await handle.close().catch(() => undefined);
    await fs.promises.rm(tmp, { force: true });
    throw err;
  }
}
