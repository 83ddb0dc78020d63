// Text that others wrote (callers, requesters, approvers, bucket keys, manifest
// fields) printed to a terminal. One rule for every command: core's, which the
// verifier's findings already follow, so a key escapes the same way whichever
// command prints it.
export { isPlain, printable, quoted } from '@veil/core';
