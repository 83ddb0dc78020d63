// Where the built-in detectors find values in a text, without masking it: so the
// tests can check each detector's decisions and measure them against a labelled corpus.
import type { DetectorName } from '../policy/schema.ts';
import { detectorNames } from '../policy/schema.ts';
import { detectorPriority, detectors } from './detectors.ts';
import { MaskingError } from './errors.ts';
import { redact } from './operators.ts';
import type { Scanner } from './scanner.ts';
import { matchText } from './scanner.ts';

export interface DetectedSpan {
  detector: DetectorName;
  start: number;
  end: number;
}

/** Spans as the engine would mask them: overlaps merged and named by priority. */
export function detectSpans(text: string, names: readonly DetectorName[] = detectorNames): DetectedSpan[] {
  const chosen = detectorPriority.filter((name) => names.includes(name));
  const scanners: Scanner[] = chosen.map((name) => ({
    finder: detectors[name],
    rule: 'detect',
    operator: 'redact',
    replace: redact,
  }));
  return matchText(text, scanners).map((hit) => {
    const detector = chosen[hit.scanner];
    if (detector === undefined) throw new MaskingError('match from an unknown detector');
    return { detector, start: hit.start, end: hit.end };
  });
}
