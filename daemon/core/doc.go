// Package core is Sluice's scheduler: MQFQ-Sticky, its baselines and Sluice's
// own improvements as one deterministic state machine. It starts no
// goroutines, reads no clock, draws no random numbers and does no I/O.
//
// The owner (the live daemon's event loop or the simulator) feeds inputs
// through [Scheduler.Step] (an [Event] with the time it happened) and
// [Scheduler.Tick] (time passing), and collects the resulting work with
// [Scheduler.Ready]. Every action carries the IDs it concerns and its
// outcome returns as an event carrying the same IDs: StartContainer is
// answered by ContainerReady or ContainerFailed, Dispatch by Completed,
// Prefetch and Evict by MemoryMoved. The same inputs always give the same
// outputs.
//
// # Ready's ordering contract
//
// Ready returns actions in the order they must be started. Within one batch:
//   - an Evict that makes room on a GPU comes before the Prefetch or
//     StartContainer that needs that room;
//   - a Prefetch of a container comes before a Dispatch to it; the executor
//     may start the invocation's kernels only once the prefetch is done (the
//     shim blocks the first kernel until then), so a Dispatch never waits for
//     a MemoryMoved event;
//   - a StopContainer comes after any other action on the same container.
//
// The slices in a Ready alias buffers of the Scheduler: they are valid
// until the next call of Step, Tick or Ready.
//
// Policies ([PolicyFCFS], [PolicyBatch], [PolicySJF], [PolicyMQFQ],
// [PolicyMQFQSticky], [PolicySluice]) differ only in which queued invocation
// runs next; they share the flows, the warm pool and memory management.
package core
