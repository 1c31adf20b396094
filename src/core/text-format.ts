/**
 * How numbers and tables read in the terminal and in written reports: one formatter each, so
 * the progress line, the epoch line, eval's table and `report.md` say a percentage the same way.
 */

/** Lines of a text file without BOM and line terminators (LF, CRLF or lone CR). */
export function textLines(text: string): string[] {
  return text.replace(/^\uFEFF/, '').split(/\r\n|\n|\r/);
}

/** 0.1342 -> '13.42%'; NaN (nothing measured yet) -> 'n/a'. */
export function formatPercent(x: number): string {
  return Number.isFinite(x) ? `${(100 * x).toFixed(2)}%` : 'n/a';
}

/* Markdown tables with padded columns: readable in a terminal and pasteable into docs. */

export type Align = 'left' | 'right';

/** East Asian wide ranges (CJK, Hangul, full-width forms, emoji): two terminal columns each. */
const WIDE =
  /[\u1100-\u115F\u2E80-\uA4CF\uAC00-\uD7A3\uF900-\uFAFF\uFE30-\uFE4F\uFF00-\uFF60\uFFE0-\uFFE6\u{1F300}-\u{1F64F}\u{20000}-\u{3FFFD}]/u;

/** Terminal columns of `text`, so class names like 鼠 line up. */
export function displayWidth(text: string): number {
  let width = 0;
  for (const ch of text) width += WIDE.test(ch) ? 2 : 1;
  return width;
}

function pad(text: string, width: number, align: Align | undefined): string {
  const fill = ' '.repeat(Math.max(0, width - displayWidth(text)));
  return align === 'right' ? fill + text : text + fill;
}

export function formatTable(
  headers: readonly string[],
  rows: readonly (readonly (string | number)[])[],
  align: readonly Align[] = [],
): string {
  const cells = rows.map((r) => r.map(String));
  const widths = headers.map((h, c) => Math.max(displayWidth(h), 3, ...cells.map((r) => displayWidth(r[c] ?? ''))));
  const line = (r: readonly string[]): string =>
    `| ${headers.map((_, c) => pad(r[c] ?? '', widths[c], align[c])).join(' | ')} |`;
  const rule = `|${widths.map((w, c) => (align[c] === 'right' ? `${'-'.repeat(w + 1)}:` : '-'.repeat(w + 2))).join('|')}|`;
  return [line(headers), rule, ...cells.map(line)].join('\n');
}
