// Command sluiced is the Sluice daemon: it schedules serverless GPU function
// invocations onto shared GPUs. This build serves /healthz and /metrics; the
// scheduler, runtime, shim control channel and eBPF observer attach to it as
// they land.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sluice-gpu/sluice/bpf"
	"github.com/sluice-gpu/sluice/bpf/observer"
	"github.com/sluice-gpu/sluice/daemon/monitor"
	"github.com/sluice-gpu/sluice/internal/config"
	"github.com/sluice-gpu/sluice/internal/version"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr, nil)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "sluiced: %v\n", err)
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

// parseConfig builds the configuration: defaults, then the -config file,
// then explicitly set flags.
func parseConfig(args []string, stderr io.Writer) (config.Config, error) {
	fs := flag.NewFlagSet("sluiced", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: sluiced [flags]\n\nThe Sluice daemon. Flags override the config file (see docs/CONFIG.md).\n\n")
		fs.PrintDefaults()
	}
	def := config.Default()
	path := fs.String("config", "", "path of a JSON config file (optional)")
	listen := fs.String("listen", def.Listen, "HTTP listen address for the API, /healthz and /metrics")
	level := fs.String("log-level", def.LogLevel, "log level: debug, info, warn or error")
	format := fs.String("log-format", def.LogFormat, "log format: text or json")
	shutdown := fs.Duration("shutdown-timeout", time.Duration(def.ShutdownTimeout), "graceful shutdown limit")
	ebpfOn := fs.Bool("ebpf", def.EBPF.Enabled, "observe GPU activity per container with eBPF uprobes (needs root)")
	nvmlOn := fs.Bool("nvml", def.NVML, "read GPU utilization and memory through NVML")
	ebpfLib := fs.String("ebpf-library", def.EBPF.Library, "CUDA driver library to probe (default: the host's libcuda.so.1)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return def, err
		}
		return def, errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sluiced: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return def, errUsage
	}
	if *showVersion {
		fmt.Fprintf(stderr, "sluiced %s\n", version.Version)
		return def, flag.ErrHelp
	}
	cfg := def
	if *path != "" {
		var err error
		if cfg, err = config.Load(*path, def); err != nil {
			return def, err
		}
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "listen":
			cfg.Listen = *listen
		case "log-level":
			cfg.LogLevel = *level
		case "log-format":
			cfg.LogFormat = *format
		case "shutdown-timeout":
			cfg.ShutdownTimeout = config.Duration(*shutdown)
		case "nvml":
			cfg.NVML = *nvmlOn
		case "ebpf":
			cfg.EBPF.Enabled = *ebpfOn
		case "ebpf-library":
			cfg.EBPF.Library = *ebpfLib
		}
	})
	return cfg, cfg.Validate()
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	level, _ := cfg.SlogLevel() // validated
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// run starts the daemon and serves until ctx is cancelled, then shuts down
// gracefully. If ready is not nil, it receives the bound listen address.
func run(ctx context.Context, args []string, stderr io.Writer, ready chan<- string) error {
	cfg, err := parseConfig(args, stderr)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)

	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfo(),
	)

	if cfg.NVML {
		gpus, err := openNVML(nvml.New(), reg, log)
		if err != nil {
			return err
		}
		if gpus != nil {
			defer gpus.Close()
			mctx, mcancel := context.WithCancel(ctx)
			defer mcancel()
			go sampleGPUs(mctx, gpus, time.Duration(cfg.MonitorInterval), log)
		}
	}

	obs, err := openObserver(cfg.EBPF, reg, log)
	if err != nil {
		return err
	}
	if obs != nil {
		defer obs.Close()
		octx, ocancel := context.WithCancel(ctx)
		defer ocancel()
		go drainSamples(octx, obs)
		go func() {
			if err := obs.Run(octx); err != nil {
				log.Error("ebpf observer stopped", "err", err)
			}
		}()
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Info("sluiced started", "version", version.Version, "listen", ln.Addr().String())
	if ready != nil {
		ready <- ln.Addr().String()
	}

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve http: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down", "timeout", time.Duration(cfg.ShutdownTimeout).String())
	sctx, cancel := context.WithTimeout(context.Background(), time.Duration(cfg.ShutdownTimeout))
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shut down http server: %w", err)
	}
	log.Info("stopped")
	return nil
}

// openObserver attaches the eBPF observer when enabled. Where this host
// cannot run eBPF it returns nil and no error: the observer has logged why,
// and the daemon runs without it.
func openObserver(cfg config.EBPF, reg prometheus.Registerer, log *slog.Logger) (*observer.Observer, error) {
	if !cfg.Enabled {
		log.Info("ebpf observability off by configuration")
		return nil, nil
	}
	o, err := observer.Open(observer.Config{
		Interval:   time.Duration(cfg.Interval),
		Registerer: reg,
		Logger:     log.With("component", "ebpf"),
	}, &bpf.Options{Library: cfg.Library, Launches: cfg.Launches})
	if errors.Is(err, bpf.ErrNotSupported) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return o, nil
}

// openNVML opens NVML through lib. Where NVML cannot run (no driver, no
// GPU) it logs one line and returns nil and no error.
func openNVML(lib nvml.Interface, reg prometheus.Registerer, log *slog.Logger) (*monitor.NVML, error) {
	n, err := monitor.OpenNVML(lib, reg)
	if errors.Is(err, monitor.ErrNotSupported) {
		log.Warn("nvml unavailable: running without GPU device readings", "reason", err)
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	for _, d := range n.Devices() {
		log.Info("gpu", "index", d.Index, "uuid", d.UUID, "name", d.Name, "memory_bytes", d.TotalBytes)
	}
	return n, nil
}

// sampleGPUs reads NVML every interval so that /metrics is current. The
// live scheduler loop takes the same samples as monitor events.
func sampleGPUs(ctx context.Context, n *monitor.NVML, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_, err := n.Sample()
		switch {
		case err != nil && !failing:
			log.Warn("nvml sample", "err", err)
		case err == nil && failing:
			log.Info("nvml sample recovered")
		}
		failing = err != nil
	}
}

// drainSamples consumes the observer's per-container activity batches.
// The scheduling core takes them as monitor events once the live daemon
// drives it; until then the daemon only exports them as metrics.
func drainSamples(ctx context.Context, o *observer.Observer) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-o.Samples():
		}
	}
}

func buildInfo() prometheus.Collector {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "sluice_build_info",
		Help: "Always 1; the version label names the sluiced build.",
	}, []string{"version"})
	g.WithLabelValues(version.Version).Set(1)
	return g
}
