package workload

import (
	"os"
	"path/filepath"
	"testing"
	"testing/fstest"
	"time"
)

// FuzzAzure: any content of the three Azure files either loads or fails
// with an error, never a panic; a trace that loads turns into a workload
// or an error. Run longer with go test -fuzz FuzzAzure ./daemon/workload.
func FuzzAzure(f *testing.F) {
	inv := "HashOwner,HashApp,HashFunction,Trigger,480,481,482\no,a,f1,http,1,0,2\no,a,f2,timer,3,3,3\n"
	dur := "HashOwner,HashApp,HashFunction,Average,Count,Minimum,Maximum,percentile_Average_0,percentile_Average_1,percentile_Average_25,percentile_Average_50,percentile_Average_75,percentile_Average_99,percentile_Average_100\n" +
		"o,a,f1,100,3,10,400,10,10,50,100,150,390,400\no,a,f2,20,9,1,40,1,1,17,20,25,39,40\n"
	mem := "HashFunction,HashOwner,HashApp,SampleCount,AverageAllocatedMb,AverageAllocatedMb_pct1,AverageAllocatedMb_pct5,AverageAllocatedMb_pct25,AverageAllocatedMb_pct50,AverageAllocatedMb_pct75,AverageAllocatedMb_pct95,AverageAllocatedMb_pct99,AverageAllocatedMb_pct100\n" +
		"f1,o,a,10,40,40,40,40,40,40,40,40,40\nf2,o,a,10,60,60,60,60,60,60,60,60,60\n"
	f.Add(inv, dur, mem)
	f.Add(inv[:60], dur, mem)
	f.Add(inv, dur+"o,a,f3,-1,1,1,1,1,1,1,1,1,1,1\n", mem)
	f.Add("HashOwner,HashApp,HashFunction,Trigger,480,482\no,a,f1,http,1,1\n", dur, mem)
	f.Fuzz(func(t *testing.T, inv, dur, mem string) {
		fsys := fstest.MapFS{
			"invocations.csv": {Data: []byte(inv)},
			"durations.csv":   {Data: []byte(dur)},
			"memory.csv":      {Data: []byte(mem)},
		}
		tr, err := loadAzureFS(fsys, "fuzz")
		if err != nil {
			return
		}
		w, err := FromAzure(tr, Options{Functions: 2, Duration: time.Minute, Seed: 1})
		if err != nil {
			return
		}
		checkWorkload(t, w)
	})
}

// FuzzIluvatar: the same for an Ilúvatar trace and its metadata.
func FuzzIluvatar(f *testing.F) {
	f.Add("func_name,invoke_time_ms\na,6\nb,51\na,900\n", "func_name,cold_dur_ms,warm_dur_ms,mem_mb,mean_iat\na,1000,23,94,797.2\nb,3000,145,6,721.6\n")
	f.Add("func_name,invoke_time_ms\na,60\na,6\n", "func_name,cold_dur_ms,warm_dur_ms,mem_mb,mean_iat\na,1000,23,94,797.2\n")
	f.Add("func_name,invoke_time_ms\nz,6\n", "func_name,cold_dur_ms,warm_dur_ms,mem_mb,mean_iat\na,1000,-23,94,797.2\n")
	f.Fuzz(func(t *testing.T, trace, meta string) {
		dir := t.TempDir()
		tp, mp := filepath.Join(dir, "trace.csv"), filepath.Join(dir, "metadata-trace.csv")
		if err := os.WriteFile(tp, []byte(trace), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(mp, []byte(meta), 0o600); err != nil {
			t.Fatal(err)
		}
		tr, err := LoadIluvatar(tp, mp)
		if err != nil {
			return
		}
		for _, o := range []Options{{}, {ScaleIluvatar: true, TargetUtil: 0.7}} {
			w, err := FromIluvatar(tr, o)
			if err != nil {
				continue
			}
			checkWorkload(t, w)
		}
	})
}

// checkWorkload: invocations sorted, in range, of known functions.
func checkWorkload(t *testing.T, w *Workload) {
	t.Helper()
	for i, inv := range w.Invocations {
		if inv.Fn < 0 || inv.Fn >= len(w.Functions) {
			t.Fatalf("invocation %d: function %d of %d", i, inv.Fn, len(w.Functions))
		}
		if inv.At < 0 || (i > 0 && inv.At < w.Invocations[i-1].At) {
			t.Fatalf("invocation %d at %v: negative or out of order", i, inv.At)
		}
	}
	for _, fn := range w.Functions {
		if !(fn.WarmSec > 0) || !(fn.ColdSec >= 0) || fn.MemBytes <= 0 {
			t.Fatalf("function %+v: bad catalog mapping", fn)
		}
	}
}
