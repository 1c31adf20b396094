/**
 * Exact-duplicate removal by pixel content. A content seen under one label keeps its first
 * copy; a content seen under two different labels is mislabelled somewhere and is dropped
 * entirely (every copy), since there is no way to tell which label is right.
 */
import { createHash } from 'node:crypto';

export interface DedupeResult {
  /** Indices of the items kept, ascending. */
  kept: number[];
  /** Extra copies removed (same content, same label). */
  duplicateCopies: number;
  /** Items removed because their content carries different labels. */
  conflicting: number[];
}

export function contentHash(pixels: Uint8Array): string {
  return createHash('sha1').update(pixels).digest('hex');
}

export function dedupeByContent(items: readonly { pixels: Uint8Array; label: number }[]): DedupeResult {
  const groups = new Map<string, number[]>();
  items.forEach((item, i) => {
    const h = contentHash(item.pixels);
    const g = groups.get(h);
    if (g) g.push(i);
    else groups.set(h, [i]);
  });
  const kept: number[] = [];
  const conflicting: number[] = [];
  let duplicateCopies = 0;
  for (const members of groups.values()) {
    const labels = new Set(members.map((i) => items[i].label));
    if (labels.size > 1) conflicting.push(...members);
    else {
      kept.push(members[0]);
      duplicateCopies += members.length - 1;
    }
  }
  return { kept: kept.sort((a, b) => a - b), duplicateCopies, conflicting: conflicting.sort((a, b) => a - b) };
}
