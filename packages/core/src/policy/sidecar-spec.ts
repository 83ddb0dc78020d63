// What of a policy leaves the controller. A rule's notification URL is a
// credential (a Slack incoming webhook takes posts from whoever holds it), and
// only the controller, which sends the notifications, uses it: it is kept out of
// pushes, pulls and the bootstrap policy written into every injected pod, where
// anyone who can read pods, or see pod traffic, would find it.

/**
 * The spec without approval rules' `notify`, leaving everything else as written,
 * unvalidated input included: the controller hands sidecars the spec as written.
 */
export function sidecarPolicySpec(spec: unknown): unknown {
  if (!isObject(spec) || !isObject(spec.approvals) || !Array.isArray(spec.approvals.rules)) return spec;
  const rules = spec.approvals.rules.map((rule: unknown) => {
    if (!isObject(rule) || !('notify' in rule)) return rule;
    const { notify: _notify, ...kept } = rule;
    return kept;
  });
  return { ...spec, approvals: { ...spec.approvals, rules } };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
