// Creates the controller's signing key Secret once, in the injector image's
// working directory (the pre-install hook runs it with `node --input-type=module -e`).
// An existing Secret is kept as it is: replacing the key would leave every sidecar
// refusing pushes until it mounts the new public half. One that holds no valid
// key stops the install, since it may be an operator's own.
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { controllerKeyFromJwk, generateControllerJwk } from './packages/injector/src/controller/keys.ts';

const namespace = process.env.VEIL_NAMESPACE;
const name = process.env.VEIL_SECRET_NAME;
const key = process.env.VEIL_SECRET_KEY || 'jwk.json';
if (!namespace || !name) throw new Error('VEIL_NAMESPACE and VEIL_SECRET_NAME are required');

const kubeConfig = new KubeConfig();
kubeConfig.loadFromDefault();
const api = kubeConfig.makeApiClient(CoreV1Api);

const code = (error) => error?.code ?? error?.statusCode ?? error?.response?.statusCode;

async function existing() {
  try {
    return await api.readNamespacedSecret({ name, namespace });
  } catch (error) {
    if (code(error) === 404) return undefined;
    throw error;
  }
}

async function check(secret) {
  const data = secret.data?.[key];
  if (!data) throw new Error(`Secret ${namespace}/${name} exists without ${key}: remove it or fix it`);
  const parsed = await controllerKeyFromJwk(JSON.parse(Buffer.from(data, 'base64').toString('utf8')));
  console.log(`kept the controller signing key ${parsed.kid} in Secret ${namespace}/${name}`);
}

const found = await existing();
if (found) {
  await check(found);
} else {
  const jwk = await generateControllerJwk();
  const body = {
    metadata: { name, namespace, labels: { 'app.kubernetes.io/managed-by': 'veil-controller' } },
    type: 'Opaque',
    stringData: { [key]: JSON.stringify(jwk) },
  };
  try {
    await api.createNamespacedSecret({ namespace, body });
    const { kid } = await controllerKeyFromJwk(jwk);
    console.log(`created the controller signing key ${kid} in Secret ${namespace}/${name}`);
  } catch (error) {
    // Another run created it meanwhile: check that one instead.
    if (code(error) !== 409) throw error;
    await check(await existing());
  }
}
