// Package pool executes warm-pool mechanics for function instances on a
// runtime.Runtime: start with a bounded readiness check, reuse of idle
// instances, invocations with timeouts, keep-alive expiry, eviction, and
// crash detection with replacement. It makes no policy decisions: the
// scheduling core decides what to start, keep and evict, and learns what
// happened through Events. Safe for concurrent use; every blocking call takes
// a context.
package pool
