/**
 * Debian's python3 with the modules some tests compare against (python3-onnx, python3-torch,
 * python3-torchvision; scripts/ensure-python.sh installs them where apt can). /usr/bin/python3,
 * not the first python3 on PATH: a pyenv or venv python does not see Debian's packages.
 */
import { spawnSync } from 'node:child_process';

export const DEBIAN_PYTHON = process.env.ALEXNET_PYTHON ?? '/usr/bin/python3';

/** null when every module imports; else why not, for the skip message. */
export function missingPythonModules(modules: readonly string[]): string | null {
  const r = spawnSync(DEBIAN_PYTHON, ['-c', `import ${modules.join(', ')}`], { encoding: 'utf8' });
  if (r.error) return `${DEBIAN_PYTHON} cannot run (${r.error.message})`;
  if (r.status !== 0)
    return `${DEBIAN_PYTHON} cannot import ${modules.join(', ')} (${r.stderr.trim().split('\n').at(-1)}): scripts/ensure-python.sh installs Debian's packages as root`;
  return null;
}

/** Runs a python script; its stdout, or throws with its stderr. */
export function runPython(script: string, args: readonly string[] = []): string {
  const r = spawnSync(DEBIAN_PYTHON, ['-c', script, ...args], { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`python failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}
