// Loaded with `node --require` by scripts/gpu-bundle.sh: at exit, appends every file this
// process loaded through require (JavaScript, JSON, native addons) to $ALEXNET_RECORD_LOADED.
// (ES modules do not show here: the bundle script adds the one it imports, webgpu's index.js.)
'use strict';
const fs = require('node:fs');
process.on('exit', () => {
  const out = process.env.ALEXNET_RECORD_LOADED;
  if (out) fs.appendFileSync(out, Object.keys(require.cache).join('\n') + '\n');
});
