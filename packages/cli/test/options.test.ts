// Option errors: refused before anything runs, naming the option and the command.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CliError } from '../src/command.ts';
import {
  approvalsApproveCommand,
  approvalsDenyCommand,
  approvalsListCommand,
  approvalsShowCommand,
} from '../src/commands/approvals.ts';
import { devCommand, devTokenCommand } from '../src/commands/dev.ts';
import {
  evidencePullCommand,
  evidenceReportCommand,
  evidenceVerifyCommand,
  runPull,
  runReport,
  runVerify,
} from '../src/commands/evidence.ts';
import { policyLintCommand } from '../src/commands/policy.ts';
import { runSessionsShow, sessionsShowCommand } from '../src/commands/sessions.ts';
import {
  inWindow,
  parseS3Url,
  pullOptionsSchema,
  timeWindow,
  validateOptions,
} from '../src/evidence/options.ts';
import { bucketInfoSchema } from '../src/evidence/store.ts';
import { captureIo } from './support/evidence.ts';

const { io } = captureIo(new Date('2025-06-01T00:00:00Z'));

async function refused(run: Promise<number>, message: RegExp | string): Promise<void> {
  await assert.rejects(run, (error: Error) => {
    assert.ok(error instanceof CliError, String(error));
    assert.equal(error.exitCode, 2);
    if (typeof message === 'string') assert.equal(error.message, message);
    else assert.match(error.message, message);
    return true;
  });
}

test('pull needs --bucket and --out', async () => {
  await refused(
    runPull(['--out', 'dir'], io),
    /^evidence pull: --bucket is required \(see veil evidence pull --help\)$/,
  );
  await refused(runPull(['--bucket', 'b'], io), /^evidence pull: --out is required/);
});

test('pull refuses an endpoint that is not an http(s) URL', async () => {
  await refused(
    runPull(['--bucket', 'b', '--out', 'd', '--endpoint', 'ftp://x'], io),
    /--endpoint must be an http\(s\) URL/,
  );
  await refused(
    runPull(['--bucket', 'b', '--out', 'd', '--endpoint', 'localhost'], io),
    /--endpoint must be an http\(s\) URL/,
  );
});

test('pull and verify refuse an endpoint holding a user, password or query, without echoing it', async () => {
  const message = (command: string) =>
    `${command}: --endpoint must not hold a user, password, query or fragment: give credentials in AWS_ACCESS_KEY_ID and its secret (see veil ${command} --help)`;
  for (const endpoint of [
    'https://auditor:hunter2@s3.example.com',
    'https://hunter2@s3.example.com',
    'https://s3.example.com/?X-Amz-Signature=hunter2',
    'https://s3.example.com?',
    'https://s3.example.com/#hunter2',
  ]) {
    await refused(
      runPull(['--bucket', 'b', '--out', 'd', '--endpoint', endpoint], io),
      message('evidence pull'),
    );
    await refused(runVerify(['s3://b', '--endpoint', endpoint], io), message('evidence verify'));
  }
});

test('an endpoint reads the same with or without a trailing /', () => {
  const options = (endpoint: string) =>
    validateOptions('evidence pull', pullOptionsSchema, { bucket: 'b', out: 'd', endpoint }).endpoint;
  assert.equal(options('http://127.0.0.1:9000/'), 'http://127.0.0.1:9000');
  assert.equal(options('http://127.0.0.1:9000'), 'http://127.0.0.1:9000');
  assert.equal(options('https://gateway.example/s3//'), 'https://gateway.example/s3');
});

test('dev refuses an upstream that is not an http(s) URL, naming the flag', async () => {
  await refused(
    devCommand.run(['--upstream', 'notaurl']),
    /^dev: --upstream must be an http\(s\) URL, not "notaurl"$/,
  );
  await refused(devCommand.run(['--upstream', 'ftp://model']), /--upstream must be an http\(s\) URL/);
});

// Should a flag be taken by mistake, veil dev stops at this policy, before it starts anything.
const noPolicy = ['--policy', 'no-such-policy.tmp.yaml'];

test("dev refuses an upstream with a path, query or fragment: it is the model's origin", async () => {
  for (const upstream of [
    'http://127.0.0.1:11434/v1',
    'http://127.0.0.1:11434/?model=a',
    'http://127.0.0.1:11434#top',
  ]) {
    await refused(
      devCommand.run(['--upstream', upstream, ...noPolicy]),
      `dev: --upstream is the model's origin (http://host:port), without a path: not "${upstream}"`,
    );
  }
});

test('dev takes port flags as digits only: no empty, blank, exponent, hex or negative port', async () => {
  for (const [flag, value] of [
    ['--port', ''],
    ['--approvals-port', ' '],
    ['--port', '1e4'],
    ['--admin-port', '0x4728'],
    ['--issuer-port', '-1'],
    ['--port', '1.0'],
    ['--port', '65536'],
    ['--port', '000080808'],
  ] as const) {
    await refused(
      devCommand.run([`${flag}=${value}`, ...noPolicy]),
      `dev: ${flag} must be a port number, not "${value}"`,
    );
  }
});

test('pull refuses times that are neither RFC 3339 nor a date, and an empty window', async () => {
  await refused(
    runPull(['--bucket', 'b', '--out', 'd', '--from', 'yesterday'], io),
    /--from must be RFC 3339 .* or a date/,
  );
  await refused(runPull(['--bucket', 'b', '--out', 'd', '--to', '2025-13-01'], io), /--to must be RFC 3339/);
  await refused(
    runPull(['--bucket', 'b', '--out', 'd', '--from', '2025-06-02', '--to', '2025-06-01'], io),
    /--from must come before --to/,
  );
});

test('unknown options and missing values are usage errors naming the command', async () => {
  await refused(
    runPull(['--bucket'], io),
    'evidence pull: --bucket needs a value (see veil evidence pull --help)',
  );
  await refused(runVerify(['dir', '--frobnicate'], io), /^evidence verify: Unknown option '--frobnicate'/);
});

test('verify takes exactly one DIR or s3:// URL', async () => {
  await refused(runVerify([], io), /evidence verify: name exactly one DIR or s3:\/\/BUCKET\/PREFIX/);
  await refused(runVerify(['a', 'b'], io), /name exactly one/);
  await refused(runVerify(['s3://'], io), /"s3:\/\/" is not s3:\/\/BUCKET\/PREFIX/);
});

test('--min-retention-days must be a whole number of days', async () => {
  await refused(
    runVerify(['dir', '--min-retention-days=-3'], io),
    /--min-retention-days must be a whole number of days/,
  );
  await refused(runVerify(['dir', '--min-retention-days', '1.5'], io), /must be a whole number/);
});

test('report needs a DIR and at least one output', async () => {
  await refused(runReport(['dir'], io), /name at least one of --html FILE, --json FILE, --csv-dir DIR/);
  await refused(runReport(['--html', 'r.html'], io), /evidence report: name exactly one DIR/);
});

test('sessions show needs exactly one ID', async () => {
  await refused(runSessionsShow([], io), /sessions show: name exactly one ID/);
});

test('a date --to includes that whole UTC day; an instant --to includes that instant', () => {
  const days = timeWindow('t', '2025-06-01', '2025-06-01');
  assert.ok(inWindow(days, new Date('2025-06-01T00:00:00.000Z')));
  assert.ok(inWindow(days, new Date('2025-06-01T23:59:59.999Z')));
  assert.ok(!inWindow(days, new Date('2025-06-02T00:00:00.000Z')));
  assert.ok(!inWindow(days, new Date('2025-05-31T23:59:59.999Z')));
  const instants = timeWindow('t', '2025-06-01T10:00:00+02:00', '2025-06-01T12:00:00Z');
  assert.ok(inWindow(instants, new Date('2025-06-01T08:00:00.000Z')));
  assert.ok(inWindow(instants, new Date('2025-06-01T12:00:00.000Z')));
  assert.ok(!inWindow(instants, new Date('2025-06-01T12:00:00.001Z')));
});

test('a window kept in bucket.json reads back: times past what RFC 3339 can hold are refused', async () => {
  for (const [from, to] of [
    ['0000-01-01', '9999-12-30'],
    ['0000-01-01T00:00:00Z', '9999-12-30T23:59:59.999Z'],
    ['0000-01-01T00:00:00-01:00', '9999-12-31T00:59:59.999+01:00'],
  ] as const) {
    const window = timeWindow('t', from, to);
    assert.equal(bucketInfoSchema.shape.from.parse(window.from?.toISOString()), window.from?.toISOString());
    assert.equal(
      bucketInfoSchema.shape.before.parse(window.before?.toISOString()),
      window.before?.toISOString(),
    );
  }
  const outside = /--(from|to) must be 0000-01-01 or later and before 9999-12-31/;
  for (const [option, time] of [
    ['--to', '9999-12-31'],
    ['--to', '9999-12-31T00:00:00Z'],
    ['--from', '9999-12-31T23:00:00-05:00'],
    ['--from', '0000-01-01T00:00:00+01:00'],
    ['--to', '0000-01-01T00:00:00+01:00'],
  ] as const) {
    await refused(runPull(['--bucket', 'b', '--out', 'd', option, time], io), outside);
  }
});

test('s3:// URLs give bucket and prefix, v1/ by default', () => {
  assert.deepEqual(parseS3Url('t', 's3://evidence'), { bucket: 'evidence', prefix: 'v1/' });
  assert.deepEqual(parseS3Url('t', 's3://evidence/v1/prod-eu/'), {
    bucket: 'evidence',
    prefix: 'v1/prod-eu/',
  });
});

test('verify and report --help state their exit codes, no evidence stream among the failures', () => {
  const oneLine = (help: string) => help.replace(/\s+/g, ' ');
  assert.match(
    oneLine(evidenceVerifyCommand.help),
    /Exits 1 if any finding is INVALID or no evidence stream was found .*; 2 on a usage error or evidence that cannot be read \(S3 unreachable, a missing bucket, refused credentials, a damaged or unfinished pull, .*\); 0 otherwise\./,
  );
  assert.match(
    oneLine(evidenceReportCommand.help),
    /NO EVIDENCE when no evidence stream was found\. Exits 1 on INVALID or NO EVIDENCE, as verify does, after writing the report all the same, or when a report file cannot be written; 2 on a usage error or evidence that cannot be read, as verify does; 0 otherwise\./,
  );
});

test("every command's help states its exit codes, 2 included", () => {
  const commands = [
    approvalsListCommand,
    approvalsShowCommand,
    approvalsApproveCommand,
    approvalsDenyCommand,
    devCommand,
    devTokenCommand,
    evidencePullCommand,
    evidenceVerifyCommand,
    evidenceReportCommand,
    policyLintCommand,
    sessionsShowCommand,
  ];
  for (const command of commands) {
    const help = command.help.replace(/\s+/g, ' ');
    assert.match(help, /[Ee]xits 0 |; 0 otherwise/, command.help);
    assert.match(help, /[;,] (exits )?2 on a usage error/, command.help);
  }
});

test('an option given twice is refused naming it: the last value would silently win', async () => {
  await refused(
    runVerify(['dir', '--min-retention-days', '365', '--min-retention-days', '30'], io),
    'evidence verify: --min-retention-days is given more than once (see veil evidence verify --help)',
  );
  await refused(
    runReport(['dir', '--html', 'r.html', '--trusted-keys', 'a', '--trusted-keys=b'], io),
    /^evidence report: --trusted-keys is given more than once/,
  );
  await refused(
    devTokenCommand.run(['--approver', '--sub', 'bob', '--approver']),
    /^dev token: --approver is given more than once/,
  );
});

test('a flag left without its value says so, naming the flag', async () => {
  await refused(
    devCommand.run(['--port', '--admin-port', '18491']),
    'dev: --port needs a value (see veil dev --help)',
  );
  await refused(runVerify(['dir', '--trusted-keys'], io), /^evidence verify: --trusted-keys needs a value /);
  await refused(runVerify(['dir', '--json=yes'], io), /^evidence verify: --json takes no value /);
});

test("a negative number reaches the option's own check", async () => {
  await refused(
    runVerify(['dir', '--min-retention-days', '-1'], io),
    'evidence verify: --min-retention-days must be a whole number of days (see veil evidence verify --help)',
  );
  await refused(devCommand.run(['--port', '-1']), 'dev: --port must be a port number, not "-1"');
  await refused(
    devTokenCommand.run(['--lifetime', '-5']),
    'dev token: --lifetime is whole seconds, 1 to 604800',
  );
});

test('dev token takes --lifetime as digits only, as the port flags', async () => {
  for (const lifetime of ['1e3', '0x10', ' 7', '7 ', '', '1.0', '0', '604801']) {
    await refused(
      devTokenCommand.run([`--lifetime=${lifetime}`]),
      'dev token: --lifetime is whole seconds, 1 to 604800',
    );
  }
});
