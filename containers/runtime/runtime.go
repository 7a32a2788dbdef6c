package runtime

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/sluice-gpu/sluice/containers/protocol"
	"github.com/sluice-gpu/sluice/containers/spec"
)

// Errors backends wrap.
var (
	// ErrNotFound: the instance, or the image it needs, does not exist.
	ErrNotFound = errors.New("not found")
	// ErrNotSupported: the backend cannot run this spec (e.g. the OpenWhisk
	// protocol on the process backend, or a GPU without the shim).
	ErrNotSupported = errors.New("not supported")
	// ErrInvalid: the spec is unusable.
	ErrInvalid = errors.New("invalid instance spec")
)

// ID names one instance within a backend.
type ID string

// Labels put on everything Sluice creates, so cleanup only touches its own.
const (
	LabelManaged    = "sluice.managed"    // always "1"
	LabelInstance   = "sluice.instance"   // the daemon instance that created it
	LabelFunction   = "sluice.function"   // function name
	LabelGeneration = "sluice.generation" // function generation (decimal)
)

// In-container paths.
const (
	// RunDir is where the per-instance host directory is mounted; it holds
	// the function socket (fn.sock) and the shim's control socket (shim.sock).
	RunDir = "/run/sluice"
	// ShimSocketName is the shim's control socket inside the instance dir;
	// the daemon listens on the host side.
	ShimSocketName = "shim.sock"
	// FnSocketName is the function socket inside the instance dir.
	FnSocketName = "fn.sock"
)

// Spec is what a backend needs to create one instance.
type Spec struct {
	// Function and Generation identify what runs; both become labels.
	Function   string
	Generation uint64
	// Image is the Docker image (Docker backend only).
	Image string
	// Command is the argument vector: inside the image for Docker (nil: the
	// image's own), on the host for the process backend (required).
	Command []string
	// Protocol is the function protocol. Default sluice.
	Protocol protocol.Kind
	// Env is extra environment (SLUICE_* are set by the backend).
	Env map[string]string
	// User to run as (uid[:gid] or a name). Default: the image's user;
	// unchanged for the process backend unless numeric and running as root.
	User string
	// MemoryBytes, CPUs and Pids are limits; zero means unlimited.
	MemoryBytes int64
	CPUs        float64
	Pids        int64
	// Network gives the instance a network. Default none (Docker).
	Network bool
	// GPU injects the shim and gives the instance a GPU: the emulated one
	// when the backend is configured with the fake driver, else GPUUUIDs
	// through the NVIDIA runtime.
	GPU      bool
	GPUUUIDs []string
}

// Validate checks the fields every backend relies on.
func (s *Spec) Validate() error {
	switch {
	case s.Function == "":
		return fmt.Errorf("%w: function name is empty", ErrInvalid)
	case s.MemoryBytes < 0 || s.CPUs < 0 || s.Pids < 0:
		return fmt.Errorf("%w: negative limit", ErrInvalid)
	}
	switch s.Protocol {
	case "", protocol.KindSluice, protocol.KindOpenWhisk:
	default:
		return fmt.Errorf("%w: protocol %q", ErrInvalid, s.Protocol)
	}
	return nil
}

// FromFunction turns a validated function spec into an instance spec for a
// backend that runs images (Docker).
func FromFunction(f *spec.Function, generation uint64) Spec {
	env := make(map[string]string, len(f.Env))
	for k, v := range f.Env {
		env[k] = v
	}
	return Spec{
		Function:    f.Name,
		Generation:  generation,
		Image:       f.Image,
		Command:     f.ImageCommand(),
		Protocol:    protocol.Kind(f.Protocol),
		Env:         env,
		User:        f.User,
		MemoryBytes: f.Limits.MemoryMB << 20,
		CPUs:        f.Limits.CPUs,
		Pids:        f.Limits.Pids,
		Network:     f.Network,
		GPU:         f.GPU,
	}
}

// FromFunctionHost turns a validated function spec into an instance spec
// for the process backend: the command is the host one (f.HostCommand).
func FromFunctionHost(f *spec.Function, generation uint64, hr spec.HostRuntimes) (Spec, error) {
	cmd, err := f.HostCommand(hr)
	if err != nil {
		return Spec{}, err
	}
	s := FromFunction(f, generation)
	s.Image, s.Command = "", cmd
	return s, nil
}

// Exit is how an instance's main process ended.
type Exit struct {
	// Code is the exit status (128+signal when killed by a signal).
	Code int
	// OOMKilled is set when the memory limit killed it (Docker only).
	OOMKilled bool
	// Err is set when the exit could not be observed.
	Err error
	// At is when the exit was observed.
	At time.Time
}

func (e Exit) String() string {
	switch {
	case e.Err != nil:
		return "exit unknown: " + e.Err.Error()
	case e.OOMKilled:
		return fmt.Sprintf("killed by the memory limit (status %d)", e.Code)
	}
	return "exited with status " + strconv.Itoa(e.Code)
}

// Info describes an instance found by List.
type Info struct {
	ID         ID
	Function   string
	Generation uint64
	// Instance is the daemon instance label it carries.
	Instance string
	Running  bool
}

// Runtime runs function instances. Implementations are safe for concurrent
// use and pass runtimetest.Run.
type Runtime interface {
	// Name is the backend's name ("docker", "process").
	Name() string
	// Create makes a stopped instance for spec, labelled with this runtime's
	// daemon instance. The error wraps ErrNotFound if the image is missing,
	// ErrNotSupported if the backend cannot run spec.
	Create(ctx context.Context, spec Spec) (ID, error)
	// Start starts id. The channel receives exactly one Exit when the main
	// process ends (or the instance is removed), then is closed.
	Start(ctx context.Context, id ID) (<-chan Exit, error)
	// Endpoint says how to reach id's function server once started.
	Endpoint(ctx context.Context, id ID) (protocol.Endpoint, error)
	// Dir is id's host directory (mounted at RunDir): the daemon listens
	// on its ShimSocketName.
	Dir(id ID) (string, error)
	// Stop asks id's main process to exit (SIGTERM) and kills it (SIGKILL)
	// if it is still running after grace; the instance stays until Remove.
	// Stopping a missing or exited instance is not an error.
	Stop(ctx context.Context, id ID, grace time.Duration) error
	// Remove kills and deletes id and its host directory; removing a
	// missing instance is not an error.
	Remove(ctx context.Context, id ID) error
	// List returns the instances carrying this runtime's daemon instance
	// label, including ones a previous daemon with the same label left.
	List(ctx context.Context) ([]Info, error)
	// Close releases the backend's resources (not the instances).
	Close() error
}

// Recover removes every instance a previous daemon with the same instance
// label left behind (restart recovery) and returns how many it removed.
func Recover(ctx context.Context, rt Runtime) (int, error) {
	infos, err := rt.List(ctx)
	if err != nil {
		return 0, fmt.Errorf("list leftover instances: %w", err)
	}
	n := 0
	for _, in := range infos {
		if err := rt.Remove(ctx, in.ID); err != nil {
			return n, fmt.Errorf("remove leftover instance %s: %w", in.ID, err)
		}
		n++
	}
	return n, nil
}

// RandomSuffix returns n random bytes as hex, for names.
func RandomSuffix(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
