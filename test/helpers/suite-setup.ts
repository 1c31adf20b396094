/**
 * Loaded first into every test process (package.json, "tap"."node-arg"), before any test code;
 * what it sets reaches the processes the tests start (workers, the CLI, fixtures) too.
 */
import { createRequire } from 'node:module';

// 1. The processes a test starts run without tap's process tracker. tap's runner loads
// @tapjs/processinfo into each test process, and the tracker hooks every spawn to put itself
// into the child's NODE_OPTIONS: the child then starts a module-loader thread before its first
// line, ~0.2 s of CPU for each of the ~250 processes the suite starts (docs/measurements.md,
// "The test suite's time"). The tracker only feeds coverage and `tap --changed`; this suite runs
// with coverage off.
interface SpawnHooks {
  removeAllListeners(): void;
}
/** process-on-spawn keeps its listeners in one global registry, whichever copy is loaded. */
const trackerRequire = createRequire(require.resolve('@tapjs/processinfo'));
(trackerRequire('process-on-spawn') as SpawnHooks).removeAllListeners();
const nodeOptions = process.env.NODE_OPTIONS;
if (nodeOptions != null) {
  const kept = nodeOptions
    .split(/\s+/)
    .filter((option) => option !== '' && !option.includes('@tapjs/processinfo'))
    .join(' ');
  if (kept === '') delete process.env.NODE_OPTIONS;
  else process.env.NODE_OPTIONS = kept;
}

// 2. OpenMP threads (the native backend's oneDNN) sleep when idle instead of spinning. libgomp
// spins by default, which suits a machine to itself; the suite runs two files at once on two
// cores, where a spinning thread takes the core the other file needs (the native kernel test's
// leak check: 17 CPU s spinning, 4.6 s passive). libgomp reads it when the addon loads.
process.env.OMP_WAIT_POLICY ??= 'passive';

// 3. Mesa's software Vulkan device (lavapipe, the webgpu tests' adapter where there is no GPU)
// compiles and runs its shaders 4 floats wide instead of the CPU's widest (8 with AVX2): the
// webgpu kernel test took 117 CPU s instead of 201 with Mesa's shader cache empty, as on a fresh
// machine, and 62 instead of 72 with it warm (AMD EPYC, Mesa 25.0). A real GPU ignores it.
process.env.LP_NATIVE_VECTOR_WIDTH ??= '128';
