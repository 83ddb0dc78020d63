// Resource quantities for the sidecar. Deliberately narrower than the API server's
// grammar (no signs, no exponents, CPU only in cores or whole millicores, memory only
// in bytes with a decimal or binary suffix): a typo then fails at admission with the
// annotation's name, instead of as an opaque pod validation error or a sidecar with
// a millibyte memory limit.
import { z } from 'zod';

const positive = (quantity: string): boolean => Number.parseFloat(quantity) > 0;

export const cpuQuantity = z
  .string()
  .regex(/^(\d+m|\d+(\.\d{1,3})?|\.\d{1,3})$/, 'must be a CPU quantity such as 100m or 0.5')
  .refine(positive, 'must be more than zero');

/** Bytes per unit of each memory suffix the sidecar takes. */
const memoryFactors: Record<string, number> = {
  '': 1,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
};

const memorySuffixes = Object.keys(memoryFactors).filter(Boolean).join('|');

/** The least memory a sidecar is given: its Node process takes about that before serving a request. */
const MIN_SIDECAR_MEMORY = '64Mi';

export const memoryQuantity = z
  .string()
  .regex(
    new RegExp(`^(\\d+(\\.\\d+)?)(${memorySuffixes})?$`),
    // No size to judge in what is no quantity.
    { error: 'must be a memory quantity such as 128Mi or 1Gi', abort: true },
  )
  // A number without a unit is bytes: `128` meant as MiB would be an OOM-killed sidecar.
  .refine(
    (quantity) => memoryBytes(quantity) >= memoryBytes(MIN_SIDECAR_MEMORY),
    `must be at least ${MIN_SIDECAR_MEMORY} (a number without a unit is bytes)`,
  );

/** A CPU quantity that passed `cpuQuantity`, in millicores. */
export function cpuMillicores(quantity: string): number {
  return quantity.endsWith('m') ? Number.parseFloat(quantity) : Number.parseFloat(quantity) * 1000;
}

/** A memory quantity that passed `memoryQuantity`, in bytes. */
export function memoryBytes(quantity: string): number {
  const suffix = /[A-Za-z]*$/.exec(quantity)?.[0] ?? '';
  return Number.parseFloat(quantity) * (memoryFactors[suffix] ?? Number.NaN);
}
