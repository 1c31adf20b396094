/**
 * The GPU vocabulary that backend/ (which runs the adapter) and devices/discover.ts (which finds the
 * devices and pins workers) share without importing each other: what Dawn says about an
 * adapter, which adapters are CPU emulations, and the `--devices webgpu:N` request.
 */

/** What Dawn says about an adapter (the fields of GPUAdapterInfo used here). */
export interface GpuAdapterInfo {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  isFallbackAdapter?: boolean;
}

/** CPU emulations of a GPU: Mesa's lavapipe (llvmpipe), Google's SwiftShader, or what the adapter itself says. */
export function isSoftwareAdapter(info: GpuAdapterInfo): boolean {
  if (info.isFallbackAdapter === true) return true;
  const text = `${info.vendor} ${info.architecture} ${info.device} ${info.description}`.toLowerCase();
  return /llvmpipe|lavapipe|swiftshader|softpipe|software/.test(text);
}

/** N of `--devices webgpu:N` (N webgpu workers on whatever adapter exists), or null for any other request. */
export function webgpuDeviceCount(request: string): number | null {
  const m = /^webgpu:(\d+)$/.exec(request.trim());
  return m == null ? null : Number(m[1]);
}
