package docker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"

	"github.com/sluice-gpu/sluice/containers/protocol"
	"github.com/sluice-gpu/sluice/containers/runtime"
)

// Config configures the Docker backend.
type Config struct {
	// Instance is the daemon instance label. Required.
	Instance string
	// StateDir holds one directory per instance, bind-mounted into its
	// container. Required. Keep it short: Unix socket paths are limited to
	// 107 bytes.
	StateDir string
	// Client is the engine client. Default: one from the environment
	// (DOCKER_HOST), closed by Close.
	Client *client.Client
	// GPU says how GPU functions get the shim and a GPU.
	GPU runtime.GPUConfig
	// TmpfsSize is the size of each container's /tmp. Default "64m".
	TmpfsSize string
	// Logger receives lifecycle messages. Default: discard.
	Logger *slog.Logger
}

// In-container paths of the injected GPU pieces.
const (
	shimMount     = "/opt/sluice/shim"
	fakeCUDAMount = "/opt/sluice/fakecuda"
	deviceMount   = "/run/sluice-gpu"
	labelDir      = "sluice.dir"
	openWhiskPort = "8080"
)

type ctr struct {
	dir      string
	spec     runtime.Spec
	cancel   context.CancelFunc // stops the wait goroutine
	done     chan struct{}      // closed when the wait goroutine reported
	pid      int
	started  bool
	exited   bool // the wait goroutine saw the container end
	protocol protocol.Kind
}

// Runtime is the Docker backend.
type Runtime struct {
	cfg       Config
	cli       *client.Client
	ownClient bool
	log       *slog.Logger
	nvidia    bool

	mu   sync.Mutex
	ctrs map[runtime.ID]*ctr
}

var _ runtime.Runtime = (*Runtime)(nil)

// New validates cfg, connects to the engine and returns the backend.
func New(ctx context.Context, cfg Config) (*Runtime, error) {
	if cfg.Instance == "" || strings.ContainsAny(cfg.Instance, " =/") {
		return nil, fmt.Errorf("docker runtime: %w: Instance %q", runtime.ErrInvalid, cfg.Instance)
	}
	if cfg.StateDir == "" {
		return nil, fmt.Errorf("docker runtime: %w: StateDir is empty", runtime.ErrInvalid)
	}
	if cfg.TmpfsSize == "" {
		cfg.TmpfsSize = "64m"
	}
	// Only dockerd (root) needs to reach instance directories from the host
	// side; functions see theirs through the bind mount.
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	r := &Runtime{cfg: cfg, cli: cfg.Client, ctrs: map[runtime.ID]*ctr{}}
	if r.cli == nil {
		cli, err := client.New(client.FromEnv)
		if err != nil {
			return nil, fmt.Errorf("connect to docker: %w", err)
		}
		r.cli, r.ownClient = cli, true
	}
	info, err := r.cli.Info(ctx, client.InfoOptions{})
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("query docker engine: %w", err)
	}
	_, r.nvidia = info.Info.Runtimes["nvidia"]
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	r.log = lg.With("runtime", "docker")
	return r, nil
}

// Name returns "docker".
func (r *Runtime) Name() string { return "docker" }

// Client returns the engine client.
func (r *Runtime) Client() *client.Client { return r.cli }

// Close stops watching for exits and closes the client if the backend
// created it. Containers keep running (a restarted daemon finds them by label).
func (r *Runtime) Close() error {
	r.mu.Lock()
	for _, c := range r.ctrs {
		if c.cancel != nil {
			c.cancel()
		}
	}
	r.mu.Unlock()
	if r.ownClient {
		return r.cli.Close()
	}
	return nil
}

func (r *Runtime) labels(s runtime.Spec, dir string) map[string]string {
	return map[string]string{
		runtime.LabelManaged:    "1",
		runtime.LabelInstance:   r.cfg.Instance,
		runtime.LabelFunction:   s.Function,
		runtime.LabelGeneration: strconv.FormatUint(s.Generation, 10),
		labelDir:                dir,
	}
}

// containerConfig builds the container's configuration for s with its host
// directory dir. It is separate from Create so tests can check it.
func (r *Runtime) containerConfig(s runtime.Spec, dir string) (*container.Config, *container.HostConfig, error) {
	env := map[string]string{}
	for k, v := range s.Env {
		env[k] = v
	}
	env[protocol.SocketEnv] = runtime.RunDir + "/" + runtime.FnSocketName
	env[runtime.EnvFunction] = s.Function
	mounts := []mount.Mount{{Type: mount.TypeBind, Source: dir, Target: runtime.RunDir}}
	var devices []container.DeviceRequest
	if s.GPU {
		g := r.cfg.GPU
		if err := g.Check(); err != nil {
			return nil, nil, err
		}
		for k, v := range runtime.FrameworkEnv() {
			env[k] = v
		}
		env["LD_PRELOAD"] = shimMount + "/" + filepath.Base(g.Shim)
		env[runtime.EnvShimSocket] = runtime.RunDir + "/" + runtime.ShimSocketName
		mounts = append(mounts, mount.Mount{Type: mount.TypeBind, Source: filepath.Dir(g.Shim), Target: shimMount, ReadOnly: true})
		switch {
		case g.Emulated():
			// Test/demo infrastructure: the fake driver is the container's
			// libcuda.so.1, and the emulated device file is shared.
			dev := g.DeviceFile()
			// The device file is mounted by itself (its directory may be
			// /dev/shm); Check created it, and it is never replaced.
			mounts = append(mounts,
				mount.Mount{Type: mount.TypeBind, Source: filepath.Dir(g.FakeCUDA), Target: fakeCUDAMount, ReadOnly: true},
				mount.Mount{Type: mount.TypeBind, Source: dev, Target: deviceMount + "/" + filepath.Base(dev)})
			env["LD_LIBRARY_PATH"] = fakeCUDAMount
			env[runtime.EnvFakeCUDADevice] = deviceMount + "/" + filepath.Base(dev)
		case r.nvidia:
			req := container.DeviceRequest{Driver: "nvidia", Capabilities: [][]string{{"gpu", "compute", "utility"}}}
			if len(s.GPUUUIDs) > 0 {
				req.DeviceIDs = s.GPUUUIDs
			} else {
				req.Count = -1
			}
			devices = append(devices, req)
		default:
			return nil, nil, fmt.Errorf("gpu function %s: no emulated GPU configured and the NVIDIA container runtime is not installed: %w", s.Function, runtime.ErrNotSupported)
		}
	}
	envList := make([]string, 0, len(env))
	for k, v := range env {
		envList = append(envList, k+"="+v)
	}
	cfg := &container.Config{
		Image:  s.Image,
		Cmd:    s.Command,
		Env:    envList,
		User:   s.User,
		Labels: r.labels(s, dir),
	}
	netMode := container.NetworkMode("none")
	if s.Network {
		netMode = "bridge"
	}
	hc := &container.HostConfig{
		NetworkMode:    netMode,
		Mounts:         mounts,
		CapDrop:        []string{"ALL"},
		SecurityOpt:    []string{"no-new-privileges"},
		ReadonlyRootfs: true,
		Tmpfs:          map[string]string{"/tmp": "rw,nosuid,nodev,mode=1777,size=" + r.cfg.TmpfsSize},
		LogConfig:      container.LogConfig{Type: "json-file", Config: map[string]string{"max-size": "10m", "max-file": "2"}},
		Resources: container.Resources{
			Memory:         s.MemoryBytes,
			NanoCPUs:       int64(s.CPUs * 1e9),
			DeviceRequests: devices,
		},
	}
	if s.Pids > 0 {
		p := s.Pids
		hc.Resources.PidsLimit = &p
	}
	return cfg, hc, nil
}

// Create creates a stopped container for s.
func (r *Runtime) Create(ctx context.Context, s runtime.Spec) (runtime.ID, error) {
	if err := s.Validate(); err != nil {
		return "", err
	}
	if s.Image == "" {
		return "", fmt.Errorf("create %s: %w: no image", s.Function, runtime.ErrInvalid)
	}
	suffix := runtime.RandomSuffix(6)
	dir := filepath.Join(r.cfg.StateDir, suffix)
	if err := os.Mkdir(dir, 0o777); err != nil {
		return "", fmt.Errorf("create instance dir: %w", err)
	}
	_ = os.Chmod(dir, 0o777) // the function may run as any user
	cfg, hc, err := r.containerConfig(s, dir)
	if err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("create %s: %w", s.Function, err)
	}
	name := "sluice-" + r.cfg.Instance + "-" + s.Function + "-" + suffix
	res, err := r.cli.ContainerCreate(ctx, client.ContainerCreateOptions{Config: cfg, HostConfig: hc, Name: name})
	if err != nil {
		os.RemoveAll(dir)
		if cerrdefs.IsNotFound(err) {
			return "", fmt.Errorf("create %s: image %s: %w", s.Function, s.Image, runtime.ErrNotFound)
		}
		return "", fmt.Errorf("create %s: %w", s.Function, err)
	}
	id := runtime.ID(res.ID)
	r.mu.Lock()
	r.ctrs[id] = &ctr{dir: dir, spec: s, protocol: s.Protocol}
	r.mu.Unlock()
	r.log.Debug("created", "id", shortID(id), "function", s.Function)
	return id, nil
}

func shortID(id runtime.ID) string {
	if len(id) > 12 {
		return string(id[:12])
	}
	return string(id)
}

func (r *Runtime) get(id runtime.ID) (*ctr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.ctrs[id]
	if !ok {
		return nil, fmt.Errorf("instance %s: %w", shortID(id), runtime.ErrNotFound)
	}
	return c, nil
}

// Start registers a wait for the container's exit, then starts it.
func (r *Runtime) Start(ctx context.Context, id runtime.ID) (<-chan runtime.Exit, error) {
	c, err := r.get(id)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	if c.started {
		r.mu.Unlock()
		return nil, fmt.Errorf("start %s: already started", shortID(id))
	}
	c.started = true
	wctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.done = make(chan struct{})
	r.mu.Unlock()
	wait := r.cli.ContainerWait(wctx, string(id), client.ContainerWaitOptions{Condition: container.WaitConditionNextExit})
	if _, err := r.cli.ContainerStart(ctx, string(id), client.ContainerStartOptions{}); err != nil {
		cancel()
		r.mu.Lock()
		c.cancel, c.done = nil, nil
		r.mu.Unlock()
		return nil, fmt.Errorf("start %s: %w", shortID(id), err)
	}
	ch := make(chan runtime.Exit, 1)
	go func() {
		defer close(c.done)
		defer close(ch)
		ex := runtime.Exit{}
		select {
		case res := <-wait.Result:
			ex.Code = int(res.StatusCode)
			if res.Error != nil && res.Error.Message != "" {
				ex.Err = errors.New(res.Error.Message)
			}
		case err := <-wait.Error:
			ex.Err = fmt.Errorf("wait for container: %w", err)
		}
		ex.At = time.Now()
		// The pid is free now and may be reused by any process.
		r.mu.Lock()
		c.pid, c.exited = 0, true
		r.mu.Unlock()
		if ex.Err == nil && ex.Code == 137 {
			ex.OOMKilled = r.oomKilled(id)
		}
		ch <- ex
	}()
	return ch, nil
}

// oomKilled asks the engine whether the memory limit killed id. The engine
// may learn of the OOM kill after the exit (containerd's OOM event races the
// exit event; 300 ms was seen to be too short on a loaded 2-core host), so a
// SIGKILLed container is asked for up to 1.5 s; a removed container (Remove
// kills with SIGKILL too) ends the search at once.
func (r *Runtime) oomKilled(id runtime.ID) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for range 30 {
		in, err := r.cli.ContainerInspect(ctx, string(id), client.ContainerInspectOptions{})
		if err != nil || in.Container.State == nil {
			return false
		}
		if in.Container.State.OOMKilled {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(50 * time.Millisecond):
		}
	}
	return false
}

// Endpoint returns the function socket, or for OpenWhisk the action port
// dialled inside the container's network namespace.
func (r *Runtime) Endpoint(ctx context.Context, id runtime.ID) (protocol.Endpoint, error) {
	c, err := r.get(id)
	if err != nil {
		return protocol.Endpoint{}, err
	}
	if c.protocol != protocol.KindOpenWhisk {
		return protocol.Endpoint{Kind: protocol.KindSluice, Network: "unix", Address: filepath.Join(c.dir, runtime.FnSocketName)}, nil
	}
	r.mu.Lock()
	pid, exited := c.pid, c.exited
	r.mu.Unlock()
	if exited {
		return protocol.Endpoint{}, fmt.Errorf("endpoint %s: container is not running", shortID(id))
	}
	if pid == 0 {
		in, err := r.cli.ContainerInspect(ctx, string(id), client.ContainerInspectOptions{})
		if err != nil {
			return protocol.Endpoint{}, fmt.Errorf("inspect %s: %w", shortID(id), err)
		}
		if in.Container.State == nil || in.Container.State.Pid == 0 {
			return protocol.Endpoint{}, fmt.Errorf("endpoint %s: container is not running", shortID(id))
		}
		pid = in.Container.State.Pid
		r.mu.Lock()
		if c.exited {
			// It ended while we asked: the pid may already be another's.
			r.mu.Unlock()
			return protocol.Endpoint{}, fmt.Errorf("endpoint %s: container is not running", shortID(id))
		}
		c.pid = pid
		r.mu.Unlock()
	}
	return protocol.Endpoint{
		Kind:    protocol.KindOpenWhisk,
		Network: "tcp",
		Address: "127.0.0.1:" + openWhiskPort,
		NetNS:   "/proc/" + strconv.Itoa(pid) + "/ns/net",
	}, nil
}

// Dir returns the instance's host directory.
func (r *Runtime) Dir(id runtime.ID) (string, error) {
	c, err := r.get(id)
	if err != nil {
		return "", err
	}
	return c.dir, nil
}

// Stop stops the container: SIGTERM, then SIGKILL after grace (rounded up to
// whole seconds, the engine's unit).
func (r *Runtime) Stop(ctx context.Context, id runtime.ID, grace time.Duration) error {
	if err := r.checkOwned(ctx, id, "stop"); err != nil {
		if cerrdefs.IsNotFound(err) {
			return nil
		}
		return err
	}
	secs := int((grace + time.Second - 1) / time.Second)
	_, err := r.cli.ContainerStop(ctx, string(id), client.ContainerStopOptions{Timeout: &secs})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("stop %s: %w", shortID(id), err)
	}
	return nil
}

// Remove force-removes the container (SIGKILL) and its host directory. For a
// container this backend did not create in this process, the directory
// comes from its label, and only containers with this daemon instance's
// label are touched.
func (r *Runtime) Remove(ctx context.Context, id runtime.ID) error {
	r.mu.Lock()
	c, ok := r.ctrs[id]
	delete(r.ctrs, id)
	var cancel context.CancelFunc
	var done chan struct{}
	if ok {
		cancel, done = c.cancel, c.done
	}
	r.mu.Unlock()
	dir := ""
	if ok {
		dir = c.dir
	} else {
		labels, err := r.ownedLabels(ctx, id, "remove")
		if err != nil {
			if cerrdefs.IsNotFound(err) {
				return nil
			}
			return err
		}
		dir = labels[labelDir]
	}
	_, err := r.cli.ContainerRemove(ctx, string(id), client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove %s: %w", shortID(id), err)
	}
	if cancel != nil {
		// Let the wait goroutine report the kill; cancel it if the engine
		// does not answer in time.
		t := time.NewTimer(10 * time.Second)
		select {
		case <-done:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		cancel()
	}
	if dir != "" && filepath.Dir(dir) == filepath.Clean(r.cfg.StateDir) {
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("remove %s: instance dir: %w", shortID(id), err)
		}
	}
	return nil
}

// checkOwned returns nil for a container this backend created in this
// process or one labelled with this daemon instance, an error for which
// cerrdefs.IsNotFound holds for a missing one, else an error: Sluice never
// acts on containers it does not own.
func (r *Runtime) checkOwned(ctx context.Context, id runtime.ID, verb string) error {
	r.mu.Lock()
	_, ok := r.ctrs[id]
	r.mu.Unlock()
	if ok {
		return nil
	}
	_, err := r.ownedLabels(ctx, id, verb)
	return err
}

// ownedLabels inspects id and returns its labels if it carries this daemon
// instance's labels.
func (r *Runtime) ownedLabels(ctx context.Context, id runtime.ID, verb string) (map[string]string, error) {
	in, err := r.cli.ContainerInspect(ctx, string(id), client.ContainerInspectOptions{})
	if err != nil {
		return nil, fmt.Errorf("inspect %s: %w", shortID(id), err)
	}
	if in.Container.Config == nil || in.Container.Config.Labels[runtime.LabelInstance] != r.cfg.Instance ||
		in.Container.Config.Labels[runtime.LabelManaged] != "1" {
		return nil, fmt.Errorf("%s %s: not created by daemon instance %s", verb, shortID(id), r.cfg.Instance)
	}
	return in.Container.Config.Labels, nil
}

// List returns the containers labelled with this daemon instance.
func (r *Runtime) List(ctx context.Context) ([]runtime.Info, error) {
	f := client.Filters{}.Add("label", runtime.LabelManaged+"=1", runtime.LabelInstance+"="+r.cfg.Instance)
	res, err := r.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	out := make([]runtime.Info, 0, len(res.Items))
	for _, s := range res.Items {
		gen, _ := strconv.ParseUint(s.Labels[runtime.LabelGeneration], 10, 64)
		out = append(out, runtime.Info{
			ID:         runtime.ID(s.ID),
			Function:   s.Labels[runtime.LabelFunction],
			Generation: gen,
			Instance:   s.Labels[runtime.LabelInstance],
			Running:    s.State == container.StateRunning,
		})
	}
	return out, nil
}
