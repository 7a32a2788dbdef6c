// Package runtime defines how Sluice runs function instances: the Runtime
// interface that every backend implements (Docker in runtime/docker, child
// processes in runtime/process), the instance Spec, labels, and the
// environment injected into GPU functions. runtime/runtimetest is the
// conformance suite every backend passes.
package runtime
