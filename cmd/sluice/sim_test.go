package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-gpu/sluice/daemon/core"
)

func TestSimBadUsage(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no out", []string{}, "--out is required"},
		{"unknown flag", []string{"--out", "x", "--frobnicate"}, "flag provided but not defined"},
		{"unknown policy", []string{"--out", "x", "--policy", "lottery"}, "unknown policy"},
		{"bad batch cap", []string{"--out", "x", "--policy", "batch:0"}, "batch cap"},
		{"bad improvement", []string{"--out", "x", "--policy", "sluice:-magic"}, "unknown improvement"},
		{"default dropped", []string{"--out", "x", "--policy", "sluice:-default"}, "unknown improvement"},
		{"mixed signs", []string{"--out", "x", "--policy", "sluice:-ratio+evictahead"}, "mixes - and +"},
		{"suffix on sluice", []string{"--out", "x", "--policy", "sluice:+prefetch:hold-cold"}, "unknown improvement"},
		{"zero D", []string{"--out", "x", "--d", "0"}, "--d 0 must be at least 1"},
		{"huge D", []string{"--out", "x", "--d", "5000"}, "D: 5000 not in"},
		{"negative memory", []string{"--out", "x", "--mem-gib", "-1"}, "memory"},
		{"slowdown below 1", []string{"--out", "x", "--slowdown2", "0.5"}, "slowdown"},
		{"zero target util", []string{"--out", "x", "--target-util", "0"}, "target-util"},
		{"stray argument", []string{"--out", "x", "extra"}, "unexpected argument"},
		{"negative footprint", []string{"--out", "x", "--footprint-gb", "-1"}, "--footprint-gb"},
		{"negative prewarm", []string{"--out", "x", "--prewarm", "-1"}, "--prewarm -1"},
		{"prewarm beyond the pool", []string{"--out", "x", "--containers", "4", "--prewarm", "5"}, "--prewarm 5"},
		{"d-max below d", []string{"--out", "x", "--d", "3", "--d-max", "2"}, "DMax: 2 not in"},
		{"hold-cold on sluice", []string{"--out", "x", "--policy", "sluice:hold-cold"}, "sluice:-name"},
		{"unknown arrival method", []string{"--out", "x", "--arrivals", "poisson"}, "--arrivals"},
		{"hold-cold twice", []string{"--out", "x", "--policy", "fcfs:hold-cold:hold-cold"}, "takes no argument"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			err := runSim(context.Background(), tc.args, &out, &errb)
			if !errors.Is(err, errUsage) {
				t.Fatalf("err = %v, want errUsage", err)
			}
			if !strings.Contains(errb.String(), tc.want) || !strings.Contains(errb.String(), "Usage: sluice sim") {
				t.Fatalf("stderr lacks %q and usage:\n%s", tc.want, errb.String())
			}
		})
	}
}

// TestParsePolicies: the :hold-cold suffix and the sluice improvement
// syntax map onto the core's Config.
func TestParsePolicies(t *testing.T) {
	specs, err := parsePolicies("mqfq-sticky,mqfq-sticky:hold-cold,batch:4:hold-cold,sluice,sluice:-adaptived-memory,sluice:+prefetch,sluice:-coldahead,sluice:+coldahead+prefetch,sluice:+default+evictahead")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, sp := range specs {
		c := sp.apply(core.Config{})
		got = append(got, fmt.Sprintf("%s cap=%d hold=%v set=%v %+v", c.Policy, c.BatchCap, c.HoldColdSlot, c.ImprovementsSet, c.Improvements))
	}
	noAD := core.SluiceImprovements()
	noAD.AdaptiveD, noAD.MemoryAware = false, false
	noColdAhead := core.SluiceImprovements()
	noColdAhead.NoColdAhead = true
	evictAhead := core.SluiceImprovements()
	evictAhead.EvictAhead = true
	for i, w := range []string{
		fmt.Sprintf("mqfq-sticky cap=0 hold=false set=false %+v", core.Improvements{}),
		fmt.Sprintf("mqfq-sticky cap=0 hold=true set=false %+v", core.Improvements{}),
		fmt.Sprintf("batch cap=4 hold=true set=false %+v", core.Improvements{}),
		fmt.Sprintf("sluice cap=0 hold=false set=false %+v", core.Improvements{}),
		fmt.Sprintf("sluice cap=0 hold=false set=true %+v", noAD),
		fmt.Sprintf("sluice cap=0 hold=false set=true %+v", core.Improvements{PrefetchAhead: true, NoColdAhead: true}),
		fmt.Sprintf("sluice cap=0 hold=false set=true %+v", noColdAhead),
		fmt.Sprintf("sluice cap=0 hold=false set=true %+v", core.Improvements{PrefetchAhead: true}),
		fmt.Sprintf("sluice cap=0 hold=false set=true %+v", evictAhead),
	} {
		if got[i] != w {
			t.Errorf("policy %d: got %s, want %s", i, got[i], w)
		}
	}
}

func TestSimBadTrace(t *testing.T) {
	dir := t.TempDir()
	trace := filepath.Join(dir, "trace.csv")
	meta := filepath.Join(dir, "metadata-trace.csv")
	os.WriteFile(meta, []byte("func_name,cold_dur_ms,warm_dur_ms,mem_mb,mean_iat\nf1,1000,200,100,500\n"), 0o644)
	os.WriteFile(trace, []byte("func_name,invoke_time_ms\nf1,10\nf2,20\n"), 0o644)
	var out, errb bytes.Buffer
	err := runSim(context.Background(), []string{"--trace", trace, "--out", filepath.Join(dir, "out")}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "trace.csv:3") || !strings.Contains(err.Error(), `"f2"`) {
		t.Fatalf("err = %v, want trace.csv:3 naming f2", err)
	}
	err = runSim(context.Background(), []string{"--trace", filepath.Join(dir, "missing"), "--out", filepath.Join(dir, "out")}, &out, &errb)
	if err == nil || errors.Is(err, errUsage) {
		t.Fatalf("missing trace: err = %v", err)
	}
}

// TestSimDeterministic: the same seed gives a byte-identical invocations.csv
// and summary.json; a different seed gives a different workload.
func TestSimDeterministic(t *testing.T) {
	dir := t.TempDir()
	run := func(name, seed string) (csv, summary []byte) {
		out := filepath.Join(dir, name)
		var so, se bytes.Buffer
		if err := runSim(context.Background(), []string{"--out", out, "--seed", seed, "--duration", "3m", "--no-plots", "-q"}, &so, &se); err != nil {
			t.Fatalf("run %s: %v\n%s", name, err, se.String())
		}
		c, err := os.ReadFile(filepath.Join(out, "invocations.csv"))
		if err != nil {
			t.Fatal(err)
		}
		s, err := os.ReadFile(filepath.Join(out, "summary.json"))
		if err != nil {
			t.Fatal(err)
		}
		return c, s
	}
	c1, s1 := run("a", "7")
	c2, s2 := run("b", "7")
	c3, _ := run("c", "8")
	if !bytes.Equal(c1, c2) || !bytes.Equal(s1, s2) {
		t.Fatal("same seed, different outputs")
	}
	if bytes.Equal(c1, c3) {
		t.Fatal("different seeds, identical invocations.csv")
	}
}

// TestSimOutputs runs the demo configuration and checks the outputs' shape.
func TestSimOutputs(t *testing.T) {
	out := t.TempDir()
	var so, se bytes.Buffer
	if err := runSim(context.Background(), []string{"--out", out}, &so, &se); err != nil {
		t.Fatalf("%v\n%s", err, se.String())
	}
	for _, f := range []string{"summary.json", "invocations.csv", "latency_cdf.png", "function_latency.png", "latency_over_time.png"} {
		if st, err := os.Stat(filepath.Join(out, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s missing or empty: %v", f, err)
		}
	}
	var s struct {
		Workload struct {
			Functions   int `json:"functions"`
			Invocations int `json:"invocations"`
		} `json:"workload"`
		Results []struct {
			Policy      string  `json:"policy"`
			Completed   int     `json:"completed"`
			Invocations int     `json:"invocations"`
			Mean        float64 `json:"mean_latency_s"`
			Var         float64 `json:"interfunction_variance"`
			Jain        float64 `json:"jain_fairness"`
			PerFunction []struct {
				Function string `json:"function"`
			} `json:"per_function"`
		} `json:"results"`
	}
	b, _ := os.ReadFile(filepath.Join(out, "summary.json"))
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	if s.Workload.Functions != 24 || len(s.Results) != 6 {
		t.Fatalf("summary: %d functions, %d results; want 24, 6", s.Workload.Functions, len(s.Results))
	}
	for _, r := range s.Results {
		if r.Completed != r.Invocations || r.Invocations != s.Workload.Invocations || r.Mean <= 0 || r.Jain <= 0 || r.Jain > 1 || len(r.PerFunction) == 0 {
			t.Errorf("result %+v looks wrong", r)
		}
	}
	csv, _ := os.ReadFile(filepath.Join(out, "invocations.csv"))
	if lines := bytes.Count(csv, []byte("\n")); lines != 1+6*s.Workload.Invocations {
		t.Errorf("invocations.csv has %d lines, want %d", lines, 1+6*s.Workload.Invocations)
	}
	for _, p := range []string{"fcfs", "mqfq-sticky", "sluice"} {
		if !strings.Contains(so.String(), p) {
			t.Errorf("table lacks %s:\n%s", p, so.String())
		}
	}
}
