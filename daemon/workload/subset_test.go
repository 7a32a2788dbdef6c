package workload

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var rewrite = flag.Bool("rewrite", false, "regenerate the embedded default trace subset from the shared Azure sample")

// sampleDir is the full Azure 2019 sample the default subset comes from.
func sampleDir(t *testing.T) string {
	dir := os.Getenv("SLUICE_AZURE_SAMPLE")
	if dir == "" {
		dir = "/work/shared/traces/azure2019-sample-100fn"
	}
	if _, err := os.Stat(filepath.Join(dir, "invocations.csv")); err != nil {
		t.Skipf("skipping: Azure 2019 sample not found at %s (set SLUICE_AZURE_SAMPLE)", dir)
	}
	return dir
}

// TestDefaultSubsetMatchesSample checks that the embedded default trace is
// exactly the 24 functions seed 1 samples from the full Azure sample, rows
// copied unchanged. With -rewrite it writes the subset.
func TestDefaultSubsetMatchesSample(t *testing.T) {
	dir := sampleDir(t)
	full, err := LoadAzure(dir)
	if err != nil {
		t.Fatal(err)
	}
	fns, err := full.Sample(24, 1)
	if err != nil {
		t.Fatal(err)
	}
	keep := map[string]bool{}
	for _, f := range fns {
		keep[f.Hash] = true
	}
	for _, name := range []string{"invocations.csv", "durations.csv", "memory.csv"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.SplitAfter(string(b), "\n")
		var out bytes.Buffer
		out.WriteString(lines[0])
		for _, l := range lines[1:] {
			for _, field := range strings.SplitN(l, ",", 4)[:min(3, len(strings.SplitN(l, ",", 4)))] {
				if keep[field] {
					out.WriteString(l)
					break
				}
			}
		}
		path := filepath.Join("data", "azure2019-default", name)
		if *rewrite {
			if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := defaultFS.ReadFile("data/azure2019-default/" + name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, out.Bytes()) {
			t.Errorf("%s differs from the subset of %s (run go test ./daemon/workload -run TestDefaultSubset -rewrite)", path, dir)
		}
	}
	if !*rewrite {
		var hashes []string
		for _, f := range DefaultAzure().Functions {
			hashes = append(hashes, f.Hash)
		}
		slices.Sort(hashes)
		if len(hashes) != 24 {
			t.Errorf("embedded subset has %d functions, want 24", len(hashes))
		}
	}
}
