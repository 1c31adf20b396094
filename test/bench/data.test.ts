import t from 'tap';
import { dataMarkdown, type DataBenchJson } from '../../bench/data';

const row = (pipeline: string, reference: string | undefined, perCore: number) => ({
  pipeline,
  reference,
  cores: 1,
  imagesPerSec: perCore,
  perCore,
  cpuMsPerImage: null,
});

t.test('each row is compared with PIL/torchvision on its own input; older results with the one figure', (t) => {
  const now: DataBenchJson = {
    images: 64,
    pngImages: 8192,
    epochs: 3,
    rounds: 1,
    loadAverage: [1, 1, 1],
    torchvision: 200,
    references: { jpeg: 200, png: 2000, gif: 'not run: no python' },
    rows: [row('ours, jpeg', 'jpeg', 300), row('ours, png', 'png', 10000), row('ours, gif', 'gif', 400)],
  };
  const text = dataMarkdown(now);
  t.match(text, /ours, jpeg .*\| +1\.50x \|/, 'jpeg: 300 / 200');
  t.match(text, /ours, png .*\| +5\.00x \|/, 'png: 10000 / 2000, not / 200');
  t.match(text, /ours, gif .*\| +2\.00x \|/, 'a reference that did not run: the JPEG figure');
  t.match(text, /torchvision on gif: not run: no python/);
  const before: DataBenchJson = {
    images: 64,
    epochs: 2,
    rounds: 1,
    loadAverage: [1, 1, 1],
    torchvision: 250,
    rows: [row('old', undefined, 500)],
  };
  t.match(dataMarkdown(before), /old .*\| +2\.00x \|/, 'results from before per-input references');
  t.end();
});
