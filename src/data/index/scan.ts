/**
 * Walking image folders. Results are sorted by code point (like Python's sorted(), which
 * torchvision's ImageFolder uses), never by readdir order, so every rank and every machine
 * sees the same sample order and therefore the same shuffles.
 */
import { Dirent, promises as fsp } from 'node:fs';
import * as path from 'node:path';

/** Extensions sharp's prebuilt libvips decodes. BMP/PSD/etc. are listed as ignored, with a reason. */
export const IMAGE_EXTENSIONS: ReadonlySet<string> = new Set([
  '.jpg',
  '.jpeg',
  '.jpe',
  '.jfif',
  '.png',
  '.webp',
  '.gif',
  '.tif',
  '.tiff',
]);

export interface IgnoredFile {
  path: string;
  reason: string;
}

export interface ScanResult {
  /** Absolute paths of files with an image extension, sorted. */
  images: string[];
  ignored: IgnoredFile[];
}

export function hasImageExtension(file: string): boolean {
  return IMAGE_EXTENSIONS.has(path.extname(file).toLowerCase());
}

/** Code-point order, independent of locale (localeCompare differs between machines). */
export function compareCodePoints(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Dotfiles are macOS/editor droppings (`._x.jpg` AppleDouble files have image extensions but
 * hold resource forks), so they are ignored silently rather than reported as bad images.
 */
function isHidden(name: string): boolean {
  return name.startsWith('.');
}

/** Entry kind, following symlinks; null for a dangling link. */
async function kindOf(full: string, entry: Dirent): Promise<'file' | 'dir' | 'other' | null> {
  if (entry.isFile()) return 'file';
  if (entry.isDirectory()) return 'dir';
  if (!entry.isSymbolicLink()) return 'other';
  const st = await fsp.stat(full).catch(() => null);
  if (!st) return null;
  return st.isFile() ? 'file' : st.isDirectory() ? 'dir' : 'other';
}

/** Sorted directory entries, hidden ones dropped. */
export async function readDirSorted(dir: string): Promise<Dirent[]> {
  const entries = await fsp.readdir(dir, { withFileTypes: true });
  return entries.filter((e) => !isHidden(e.name)).sort((a, b) => compareCodePoints(a.name, b.name));
}

/**
 * All image files under `dir`, recursively (sub-folders inside a class folder belong to that
 * class, as in ImageFolder). FIFOs, sockets and devices with image names are ignored: reading
 * a FIFO would block a decode thread forever.
 */
export async function scanImages(dir: string, out: ScanResult = { images: [], ignored: [] }): Promise<ScanResult> {
  for (const entry of await readDirSorted(dir)) {
    const full = path.join(dir, entry.name);
    const kind = await kindOf(full, entry);
    if (kind === 'dir') await scanImages(full, out);
    else if (kind === null) out.ignored.push({ path: full, reason: 'dangling symbolic link' });
    else if (kind === 'other') out.ignored.push({ path: full, reason: 'not a regular file' });
    else if (hasImageExtension(entry.name)) out.images.push(full);
    else out.ignored.push({ path: full, reason: `unsupported extension '${path.extname(entry.name) || '(none)'}'` });
  }
  return out;
}

/** Immediate sub-folders of `dir` (following symlinks), sorted; files directly in `dir` are returned separately. */
export async function subfolders(dir: string): Promise<{ dirs: string[]; files: string[] }> {
  const dirs: string[] = [];
  const files: string[] = [];
  for (const entry of await readDirSorted(dir)) {
    const full = path.join(dir, entry.name);
    const kind = await kindOf(full, entry);
    if (kind === 'dir') dirs.push(entry.name);
    else if (kind === 'file') files.push(full);
  }
  return { dirs, files };
}

export async function isDirectory(p: string): Promise<boolean> {
  const st = await fsp.stat(p).catch(() => null);
  return st !== null && st.isDirectory();
}

export async function isFile(p: string): Promise<boolean> {
  const st = await fsp.stat(p).catch(() => null);
  return st !== null && st.isFile();
}
