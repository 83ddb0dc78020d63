// Writes the report files an auditor asked for: JSON, HTML, and a CSV per population.
import { mkdir, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { CliError } from '../command.ts';
import { fsReason } from '../fserror.ts';
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
    await writeOne(file, content);
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

async function writeOne(file: string, content: string): Promise<void> {
  try {
    await mkdir(dirname(file), { recursive: true });
    await writeFile(file, content);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    // mkdir says EEXIST (or ENOTDIR) of a file in the way: the user needs to hear which one.
    const inTheWay = code === 'EEXIST' || code === 'ENOTDIR' ? await fileAbove(file) : undefined;
    const problem = inTheWay === undefined ? fsReason(error) : `${inTheWay} is not a directory`;
    throw new CliError(`cannot write ${file}: ${problem}`, 1);
  }
}

/** The nearest existing path above `file`, when it is not a folder. */
async function fileAbove(file: string): Promise<string | undefined> {
  for (let path = dirname(file); ; path = dirname(path)) {
    const info = await stat(path).catch(() => undefined);
    if (info !== undefined) return info.isDirectory() ? undefined : path;
    if (dirname(path) === path) return undefined;
  }
}
