/**
 * `--layout auto|folders|lists`: which index of a dataset to use when it has class folders,
 * list files, or both. The rule for `auto`: list files when they name every split the
 * folders have (they are the explicit index, with the user's own label numbers), else the
 * folders, so a split that exists only as a folder is never dropped. Whenever both exist,
 * one line says which was used, why, and what the other choice would do.
 */
import * as path from 'node:path';
import type { Layout } from '../../core/config';
import type { SplitName } from './dataset';

export interface LayoutChoice {
  use: 'folders' | 'lists';
  /** One line for the user, or null when there was nothing to choose. */
  note: string | null;
  warnings: string[];
  /** True when `auto` chose list files beside folders: compare their contents for the note. */
  compareWithFolders: boolean;
}

type SplitPaths = Partial<Record<SplitName, string>>;

const names = (paths: SplitPaths): string =>
  Object.values(paths)
    .map((p) => path.basename(p))
    .join(', ');
const folderNames = (paths: SplitPaths): string =>
  Object.values(paths)
    .map((p) => `${path.basename(p)}/`)
    .join(', ');

/** Which layout to open, from what exists. Pure: the caller has looked at the disk. */
export function chooseLayout(layout: Layout, lists: SplitPaths, folders: SplitPaths): LayoutChoice {
  const hasLists = Object.keys(lists).length > 0;
  const hasFolders = Object.keys(folders).length > 0;
  const folderOnly = (Object.keys(folders) as SplitName[]).filter((s) => lists[s] === undefined);
  const onlyFolders: SplitPaths = Object.fromEntries(folderOnly.map((s) => [s, folders[s]]));
  if (layout === 'folders') {
    return {
      use: 'folders',
      note: hasLists ? `layout folders: the list files (${names(lists)}) are not used` : null,
      warnings: [],
      compareWithFolders: false,
    };
  }
  if (layout === 'lists') {
    const warnings = folderOnly.map(
      (s) => `${folders[s]}/ is not used: --layout lists, and there is no ${s} list file`,
    );
    return { use: 'lists', note: null, warnings, compareWithFolders: false };
  }
  if (!hasLists) return { use: 'folders', note: null, warnings: [], compareWithFolders: false };
  if (!hasFolders) return { use: 'lists', note: null, warnings: [], compareWithFolders: false };
  if (folderOnly.length > 0) {
    return {
      use: 'folders',
      note: `layout auto: using the folders (${folderNames(folders)}): the list files (${names(lists)}) do not cover ${folderNames(onlyFolders)}; --layout lists would use ${names(lists)} alone`,
      warnings: [],
      compareWithFolders: false,
    };
  }
  return { use: 'lists', note: null, warnings: [], compareWithFolders: true };
}

/** The note when `auto` used list files beside folders, from how their images compare. */
export function listsOverFoldersNote(lists: SplitPaths, listed: number, inFolders: number, notListed: number): string {
  const used = `layout auto: using the list files (${names(lists)}), which name every split`;
  const other = "--layout folders would number the classes by sorted folder name instead of the lists' labels";
  if (notListed === 0 && listed === inFolders)
    return `${used}; they list the same ${listed} images as the folders; ${other}`;
  return `${used}; they list ${listed} existing images, the folders hold ${inFolders} (${notListed} not listed); ${other} and use all ${inFolders}`;
}
