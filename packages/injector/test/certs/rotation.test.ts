import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { test } from 'node:test';
import {
  applyPlan,
  type CertificatePolicy,
  caBundle,
  certificateState,
  planRotation,
  type SecretData,
  secretKeys,
  serviceDnsNames,
} from '../../src/certs/selfmanaged.ts';

const day = 86_400;
const policy: CertificatePolicy = {
  dnsNames: serviceDnsNames(['veil-injector'], 'veil-system'),
  caLifetimeSeconds: 300 * day,
  servingLifetimeSeconds: 30 * day,
  renewFraction: 1 / 3,
};
const t0 = new Date('2030-01-01T00:00:00Z');
const at = (days: number) => new Date(t0.getTime() + days * day * 1000);
const nothing = { newCa: false, newServing: false, dropPrevious: false };
const planOf = (data: SecretData | undefined, now: Date, p = policy) => {
  const { reasons: _, ...plan } = planRotation(certificateState(data), now, p);
  return plan;
};
const fresh = () => applyPlan(undefined, planRotation(certificateState(undefined), t0, policy), t0, policy);

test('service DNS names: both forms per Service', () => {
  assert.deepEqual(serviceDnsNames(['a', 'b'], 'ns'), [
    'a.ns.svc',
    'a.ns.svc.cluster.local',
    'b.ns.svc',
    'b.ns.svc.cluster.local',
  ]);
});

test('no Secret: a CA and a serving certificate', () => {
  assert.deepEqual(planOf(undefined, t0), { ...nothing, newCa: true, newServing: true });
  const data = fresh();
  assert.deepEqual(Object.keys(data).sort(), ['ca.crt', 'ca.key', 'tls.crt', 'tls.key']);
  assert.deepEqual(planOf(data, t0), nothing);
  const ca = new X509Certificate(data[secretKeys.caCert] as string);
  const leaf = new X509Certificate(data[secretKeys.cert] as string);
  assert.ok(leaf.verify(ca.publicKey));
  for (const name of policy.dnsNames) assert.equal(leaf.checkHost(name), name);
});

test('the serving certificate renews once less than the fraction of its lifetime remains', () => {
  const data = fresh();
  assert.deepEqual(planOf(data, at(19)), nothing);
  assert.deepEqual(planOf(data, at(21)), { ...nothing, newServing: true });
  assert.deepEqual(planOf(data, at(31)), { ...nothing, newServing: true });
  const renewed = applyPlan(data, planRotation(certificateState(data), at(21), policy), at(21), policy);
  assert.equal(renewed[secretKeys.caCert], data[secretKeys.caCert], 'the CA stays');
  assert.notEqual(renewed[secretKeys.cert], data[secretKeys.cert]);
  assert.deepEqual(planOf(renewed, at(21)), nothing);
});

test('a broken pair, a foreign signer or a missing name renews the serving certificate', () => {
  const data = fresh();
  const other = fresh();
  assert.deepEqual(planOf({ ...data, [secretKeys.key]: other[secretKeys.key] as string }, t0), {
    ...nothing,
    newServing: true,
  });
  assert.deepEqual(
    planOf(
      {
        ...data,
        [secretKeys.cert]: other[secretKeys.cert] as string,
        [secretKeys.key]: other[secretKeys.key] as string,
      },
      t0,
    ),
    {
      ...nothing,
      newServing: true,
    },
  );
  const renamed = { ...policy, dnsNames: [...policy.dnsNames, 'veil-pull.veil-system.svc'] };
  assert.deepEqual(planOf(data, t0, renamed), { ...nothing, newServing: true });
  assert.deepEqual(planOf({ ...data, [secretKeys.caKey]: '' }, t0), {
    ...nothing,
    newCa: true,
    newServing: true,
  });
});

test('the CA rotates before expiry; the old one stays in the bundle until it expires', () => {
  const data = fresh();
  // 300-day CA, renewed with less than 100 days left.
  assert.equal(planOf(data, at(199)).newCa, false);
  const plan = planRotation(certificateState(data), at(201), policy);
  assert.deepEqual(
    { ...plan, reasons: undefined },
    { ...nothing, newCa: true, newServing: true, reasons: undefined },
  );
  const rotated = applyPlan(data, plan, at(201), policy);
  assert.equal(rotated[secretKeys.previousCaCert], data[secretKeys.caCert]);
  assert.notEqual(rotated[secretKeys.caCert], data[secretKeys.caCert]);
  const bundle = caBundle(rotated);
  assert.equal(bundle, `${rotated[secretKeys.caCert]}${data[secretKeys.caCert]}`);
  const newCa = new X509Certificate(rotated[secretKeys.caCert] as string);
  assert.ok(new X509Certificate(rotated[secretKeys.cert] as string).verify(newCa.publicKey));
  // During the overlap nothing changes; once the old CA expires it leaves the bundle.
  assert.deepEqual(planOf(rotated, at(210)), nothing);
  const expired = planRotation(certificateState(rotated), at(301), policy);
  assert.equal(expired.dropPrevious, true);
  assert.equal(expired.newCa, false);
  const after = applyPlan(rotated, expired, at(301), policy);
  assert.equal(after[secretKeys.previousCaCert], undefined);
  assert.equal(after[secretKeys.caCert], rotated[secretKeys.caCert]);
  assert.equal(caBundle(after), rotated[secretKeys.caCert]);
});

test('a serving certificate never outlives its CA', () => {
  const short = { ...policy, caLifetimeSeconds: 10 * day };
  const data = applyPlan(undefined, planRotation(certificateState(undefined), t0, short), t0, short);
  const ca = new X509Certificate(data[secretKeys.caCert] as string);
  const leaf = new X509Certificate(data[secretKeys.cert] as string);
  assert.equal(leaf.validToDate.getTime(), ca.validToDate.getTime());
});

test('an expired CA is not kept as the previous one', () => {
  const data = fresh();
  const plan = planRotation(certificateState(data), at(400), policy);
  assert.equal(plan.newCa, true);
  const rotated = applyPlan(data, plan, at(400), policy);
  assert.equal(rotated[secretKeys.previousCaCert], undefined);
});
