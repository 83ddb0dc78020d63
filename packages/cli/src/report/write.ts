// Writes the report files an auditor asked for: JSON, HTML, and a CSV per population.
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { csvDocument } from './csv.ts';
import { renderHtml } from './html.ts';
import type { Report } from './model.ts';

export type ReportOutputs = {
  html?: string | undefined;
  json?: string | undefined;
  csvDir?: string | undefined;
};

/** Returns the files written. */
export async function writeReport(report: Report, outputs: ReportOutputs): Promise<string[]> {
  const written: string[] = [];
  const write = async (file: string, content: string) => {
    await mkdir(dirname(file), { recursive: true });
    await writeFile(file, content);
    written.push(file);
  };
  if (outputs.json) await write(outputs.json, `${JSON.stringify(report, null, 2)}\n`);
  if (outputs.html) await write(outputs.html, renderHtml(report));
  if (outputs.csvDir) {
    for (const population of report.populations) {
      await write(
        join(outputs.csvDir, `${population.name}.csv`),
        csvDocument(population.columns, population.rows),
      );
    }
  }
  return written;
}
