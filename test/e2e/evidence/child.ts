// A sidecar in a process of its own, configured from the environment, so a
// test can kill it for real (SIGKILL) or stop it cleanly (SIGTERM). It prints
// one JSON line with its URLs once it serves.
import { configFromEnv, startSidecar } from '@veil/sidecar';

const sidecar = await startSidecar(configFromEnv(process.env));
process.stdout.write(`${JSON.stringify({ url: sidecar.url, adminUrl: sidecar.adminUrl })}\n`);
process.once('SIGTERM', () => {
  sidecar.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
});
