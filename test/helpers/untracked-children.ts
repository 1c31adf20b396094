/**
 * Loaded first into every test process (package.json, "tap"."node-arg"): the processes a test
 * starts (workers, the CLI, fixtures) start without tap's process tracker.
 *
 * tap's runner loads @tapjs/processinfo into each test process, and the tracker hooks every
 * spawn to put itself into the child's NODE_OPTIONS. A child then starts a module-loader thread
 * before its first line: ~0.3 s of CPU for each of the ~250 processes the suite starts
 * (docs/measurements.md, "The suite's time"). The tracker only feeds coverage and
 * `tap --changed`; this suite runs with coverage off, so its children need neither.
 */
import { createRequire } from 'node:module';

interface SpawnHooks {
  removeAllListeners(): void;
}

/** process-on-spawn keeps its listeners in one global registry, whichever copy is loaded. */
const trackerRequire = createRequire(require.resolve('@tapjs/processinfo'));
const spawnHooks = trackerRequire('process-on-spawn') as SpawnHooks;
spawnHooks.removeAllListeners();

/** The tracker's own --import in NODE_OPTIONS would otherwise reach the children by inheritance. */
const nodeOptions = process.env.NODE_OPTIONS;
if (nodeOptions != null) {
  const kept = nodeOptions
    .split(/\s+/)
    .filter((option) => option !== '' && !option.includes('@tapjs/processinfo'))
    .join(' ');
  if (kept === '') delete process.env.NODE_OPTIONS;
  else process.env.NODE_OPTIONS = kept;
}
