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

export const memoryQuantity = z
  .string()
  .regex(/^(\d+(\.\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$/, 'must be a memory quantity such as 128Mi or 1Gi')
  .refine(positive, 'must be more than zero');
