/**
 * Turns the benchmarks' JSON files into charts (SVG and PNG) and, with --doc, refreshes the
 * generated blocks of docs/benchmarks.md (the prose around them is kept):
 *
 *   node dist/bench/report.js --train train.json[,train-wasm.json] [--allreduce allreduce.json]
 *       [--data data.json] [--kernels kernels.json] --img-dir docs/img [--doc docs/benchmarks.md]
 *
 * `make bench` runs it on the full results; `make bench-quick` only draws its charts.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeSvgAndPng } from '../src/report/svg';
import { markdownTable, type Row as AllReduceRow } from './allreduce';
import { busbwChartSvg, throughputChartSvg } from './charts';
import { dataMarkdown, type DataBenchJson } from './data';
import { flagValue, replaceGeneratedBlock } from './harness';
import { mergeTrainResults, trainMarkdown, type TrainBenchJson } from './train-stats';

interface AllReduceJson {
  date: string;
  context: string;
  rows: AllReduceRow[];
  gloo: AllReduceRow[] | string;
}

const readJson = <T>(file: string): T => JSON.parse(fs.readFileSync(file, 'utf8')) as T;

async function main(argv: string[]): Promise<void> {
  const trainFile = flagValue(argv, '--train');
  const allreduceFile = flagValue(argv, '--allreduce');
  const dataFile = flagValue(argv, '--data');
  const imgDir = flagValue(argv, '--img-dir');
  const kernelsFile = flagValue(argv, '--kernels');
  const docFile = flagValue(argv, '--doc');
  if (imgDir === undefined || (trainFile ?? allreduceFile ?? dataFile ?? kernelsFile) === undefined) {
    throw new Error(
      'usage: report.js --img-dir DIR [--train F[,F]] [--allreduce F] [--data F] [--kernels F] [--doc docs/benchmarks.md]',
    );
  }
  fs.mkdirSync(imgDir, { recursive: true });
  const blocks: [string, string][] = [];
  if (trainFile !== undefined) {
    const train = mergeTrainResults(trainFile.split(',').map((f) => readJson<TrainBenchJson>(f)));
    const svg = throughputChartSvg(train.rows, `Training throughput, ${train.date.slice(0, 10)}`);
    await writeSvgAndPng(svg, path.join(imgDir, 'train-throughput.svg'), path.join(imgDir, 'train-throughput.png'));
    blocks.push(['train', trainMarkdown(train, '###')]);
  }
  if (allreduceFile !== undefined) {
    const ar = readJson<AllReduceJson>(allreduceFile);
    const gloo = typeof ar.gloo === 'string' ? [] : ar.gloo;
    const svg = busbwChartSvg([...ar.rows, ...gloo], `Ring all-reduce bus bandwidth, ${ar.date.slice(0, 10)}`);
    await writeSvgAndPng(svg, path.join(imgDir, 'allreduce-busbw.svg'), path.join(imgDir, 'allreduce-busbw.png'));
    const note = typeof ar.gloo === 'string' ? `\n\nnote: ${ar.gloo}` : '';
    blocks.push([
      'allreduce',
      `### ring all-reduce (${ar.context}; ${ar.date})\n\nFrom \`${allreduceFile}\`.\n\n${markdownTable(ar.rows, gloo)}${note}`,
    ]);
  }
  if (kernelsFile !== undefined)
    blocks.push(['kernels', readJson<{ markdown: string }>(kernelsFile).markdown.replace(/^# /, '### ')]);
  if (dataFile !== undefined)
    blocks.push([
      'data',
      `### data pipeline\n\nFrom \`${dataFile}\`.\n\n${dataMarkdown(readJson<DataBenchJson>(dataFile))}`,
    ]);
  console.log(`wrote charts to ${imgDir}`);
  if (docFile !== undefined) {
    let doc = fs.existsSync(docFile) ? fs.readFileSync(docFile, 'utf8') : '# Benchmarks\n';
    for (const [id, content] of blocks) doc = replaceGeneratedBlock(doc, id, content);
    fs.writeFileSync(docFile, doc);
    console.log(`updated ${blocks.map(([id]) => id).join(', ')} in ${docFile}`);
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  });
}
