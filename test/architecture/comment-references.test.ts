// Comments that point somewhere must point at something that exists. When files move or names
// change, a comment that names the old file or function goes stale silently; this test reads
// every comment of src/**/*.ts and checks the references it can recognise:
//
//   - a file path ending in .ts, .cc, .sh or .md, in any form ("see X in Y", "(see Y)", "Y's X",
//     a bare "(Y)"): the file must exist, resolved against the commenting file's folder, src/,
//     or the repository root. A path in backticks is a name the code uses (a file a run writes,
//     such as `report.md`), not a reference, and is skipped;
//   - "see X in Y" and "Y's X", where X looks like code (see looksLikeCode): X must occur in Y;
//   - a docs link, a docs/ markdown path, a comma and a quoted heading: the document must have
//     that heading (or one that goes on with a parenthesis after it).
//
// Comments are found by TypeScript's own parser (so a "//" inside a string or a regex is not a
// comment); the references in them by the plain regular expressions below. test/ is not read:
// its comments name test files by their old names in places; widen `files` once they are fixed.
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import { REPO, SRC } from '../helpers/repo';
import ts from 'typescript';

const ROOT = REPO;

/** Every comment of a TypeScript source, as text: markers and each line's leading '*' removed, lines joined by spaces. */
export function commentsOf(fileName: string, text: string): string[] {
  const source = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, true);
  const seen = new Map<number, string>();
  const collect = (ranges: ts.CommentRange[] | undefined): void => {
    for (const r of ranges ?? []) if (!seen.has(r.pos)) seen.set(r.pos, text.slice(r.pos, r.end));
  };
  // getChildren includes the tokens ('{', '}', ';'), so a comment before a closing brace is
  // found too, as the leading comment of that brace.
  const visit = (node: ts.Node): void => {
    collect(ts.getLeadingCommentRanges(text, node.pos));
    collect(ts.getTrailingCommentRanges(text, node.end));
    for (const child of node.getChildren(source)) visit(child);
  };
  visit(source);
  return [...seen.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([, raw]) =>
      raw
        .replace(/^\/\*\*?|\*\/$/g, '')
        .split('\n')
        .map((line) => line.replace(/^\s*(\/\/+|\*(?!\/))?\s?/, '').trim())
        .join(' ')
        .trim(),
    );
}

/** What a comment refers to: a file, maybe a name in it, or a heading of a document. */
export interface Reference {
  file: string;
  name?: string;
  heading?: string;
}

// A path: optional ./ or ../ steps, then segments, ending in one of the extensions we check.
const PATH = String.raw`(?:\.\.?/)*[\w@-][\w@.-]*(?:/[\w@.-]+)*\.(?:ts|cc|sh|md)(?![\w/-])`;
// An identifier, maybe dotted (Class.method), maybe called: convLayer, Ring.allReduce().
const NAME = String.raw`[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)*(?:\(\))?`;

/**
 * A word is taken for a name in the code (and checked) when it is written in backticks, ends in
 * "()", or has the shape of an identifier rather than of English: an inner capital (convLayer,
 * TRAIN_DEFAULTS, RingAllReduce), an underscore, a digit or a dot. In "see the header in Y" and
 * "Y's rule" the words are prose, and only Y is checked.
 */
export function looksLikeCode(word: string, backticked: boolean): boolean {
  return backticked || /\(\)$/.test(word) || /^.+[A-Z_0-9.$]/.test(word) || /^[A-Z][A-Z0-9_]+$/.test(word);
}

function bare(name: string): string {
  return name.replace(/\(\)$/, '');
}

/** The references of one comment's text. */
export function referencesIn(comment: string): Reference[] {
  const refs: Reference[] = [];
  // "see X in Y"
  for (const m of comment.matchAll(new RegExp(String.raw`\bsee\s+(\x60?)(${NAME})\1\s+in\s+(${PATH})`, 'g'))) {
    refs.push(looksLikeCode(m[2], m[1] === '`') ? { file: m[3], name: bare(m[2]) } : { file: m[3] });
  }
  // "Y's X"
  for (const m of comment.matchAll(new RegExp(String.raw`(${PATH})'s\s+(\x60?)(${NAME})\2`, 'g'))) {
    if (looksLikeCode(m[3], m[2] === '`')) refs.push({ file: m[1], name: bare(m[3]) });
  }
  // `docs/x.md, "Heading"`
  for (const m of comment.matchAll(/\b(docs\/[\w.-]+\.md),\s*"([^"]+)"/g)) refs.push({ file: m[1], heading: m[2] });
  // Every path, named or not ("(see Y)", "(Y)", "Y's rule"): the file must exist.
  for (const m of comment.matchAll(new RegExp(PATH, 'g'))) {
    // Skip a path in backticks (a name the code uses) and one that goes on from a URL or another
    // path ("https://...", "node_modules/.../x.ts" is matched from its start, not its middle).
    const before = comment.slice(Math.max(0, m.index - 1), m.index);
    if (before === '`' || before === '/' || before === ':' || before === '.' || before === '@') continue;
    refs.push({ file: m[0] });
  }
  // One check per distinct reference in a comment (a named reference also matched as a path).
  const distinct = new Map(refs.map((r) => [JSON.stringify(r), r]));
  return [...distinct.values()].filter(
    (r) => r.name || r.heading || !refs.some((o) => o.file === r.file && (o.name || o.heading)),
  );
}

/** The file a reference names, resolved as the test's header says; null when none exists. */
function resolveFile(fromFile: string, ref: string): string | null {
  for (const base of [path.dirname(fromFile), SRC, ROOT]) {
    const p = path.resolve(base, ref);
    if (fs.existsSync(p) && fs.statSync(p).isFile()) return p;
  }
  return null;
}

/** The text of each markdown heading ("## Zero-copy rules" -> "Zero-copy rules"). */
function headingsOf(markdown: string): Set<string> {
  return new Set([...markdown.matchAll(/^#{1,6}\s+(.+?)\s*#*\s*$/gm)].map((m) => m[1].trim()));
}

/** Why a reference is broken, or null when it holds. */
export function checkReference(
  fromFile: string,
  ref: Reference,
  read = (p: string) => fs.readFileSync(p, 'utf8'),
): string | null {
  const file = resolveFile(fromFile, ref.file);
  if (!file) return `no file ${ref.file}`;
  if (ref.name) {
    const parts = ref.name.split('.');
    const text = read(file);
    const missing = parts.filter(
      (part) => !new RegExp(String.raw`(?<![\w$])${part.replace(/\$/g, '\\$')}(?![\w$])`).test(text),
    );
    if (missing.length) return `${ref.file} has no ${ref.name}`;
  }
  const heading = ref.heading;
  if (heading && ![...headingsOf(read(file))].some((h) => h === heading || h.startsWith(`${heading} (`)))
    return `${ref.file} has no heading "${ref.heading}"`;
  return null;
}

function tsFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return e.name === 'fixtures' || e.name === 'node_modules' ? [] : tsFiles(p);
    return e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [p] : [];
  });
}

t.test('the parser finds each form of reference, and a broken one is reported', async (t) => {
  const text = [
    '/**',
    ' * The ring (see ringAllReduce in dist/ring/allreduce.ts); its codec (see dist/ring/wire-codec.ts).',
    " * dist/ring/zmq-ring.ts's `ZmqRingOptions` are set; see noSuchFunction in dist/ring/allreduce.ts.",
    ' * A run writes `report.md` (a name, not a reference); rules in docs/allreduce.md, "Zero-copy rules".',
    ' */',
    'const s = "// see gone.ts, a string, not a comment";',
    '// Figures: (docs/benchmarks.md, "No such heading"); moved: (see parallel/comm-thread.ts).',
    'function f(): void {',
    '  // see the header in dist/ring/allreduce.ts (prose: only the file is checked)',
    '}',
  ].join('\n');
  const comments = commentsOf('made-up.ts', text);
  t.equal(comments.length, 3, 'two comments and the doc comment; the string is none');
  const refs = comments.flatMap(referencesIn);
  t.match(refs, [
    { file: 'dist/ring/allreduce.ts', name: 'ringAllReduce' },
    { file: 'dist/ring/allreduce.ts', name: 'noSuchFunction' },
    { file: 'dist/ring/zmq-ring.ts', name: 'ZmqRingOptions' },
  ]);
  t.notOk(
    refs.some((r) => r.file === 'report.md'),
    'a backticked file name is not a reference',
  );
  const fromFile = path.join(SRC, 'made-up.ts');
  const problems = refs.map((r) => checkReference(fromFile, r)).filter((p) => p !== null);
  t.same(problems.sort(), [
    'dist/ring/allreduce.ts has no noSuchFunction',
    'docs/benchmarks.md has no heading "No such heading"',
    'no file parallel/comm-thread.ts',
  ]);
});

t.test('every reference in the comments of src/ names a file, name and heading that exist', async (t) => {
  const files = tsFiles(SRC);
  let checked = 0;
  const broken: string[] = [];
  for (const file of files) {
    for (const comment of commentsOf(file, fs.readFileSync(file, 'utf8'))) {
      for (const ref of referencesIn(comment)) {
        checked++;
        const problem = checkReference(file, ref);
        if (problem) broken.push(`${path.relative(ROOT, file)}: ${problem}`);
      }
    }
  }
  t.ok(checked > 50, `${checked} references checked in ${files.length} files`);
  t.same(broken, [], 'fix the comment (or the reference form) for each');
});
