package workload

import (
	"bytes"
	_ "embed"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
)

//go:embed data/gpu-functions-v100.csv
var catalogCSV []byte

// CatalogEntry is one measured GPU function.
type CatalogEntry struct {
	Name string
	// WarmSec is the isolated warm execution time on the GPU, seconds.
	WarmSec float64
	// ColdSec is the container start time with the GPU attached (container
	// + CUDA/framework init), seconds; entries that did not report it get
	// the median of those that did.
	ColdSec float64
	// MemBytes is the GPU memory footprint.
	MemBytes int64
}

// Memory footprints: the catalog's notes say the FFT function used about
// 1.5 GB and unknown footprints were assumed to be 3 GB.
const (
	DefaultMemBytes = 3e9
	fftMemBytes     = 1.5e9
)

// Catalog returns the embedded V100 catalog, sorted by warm time.
func Catalog() []CatalogEntry {
	c, err := ParseCatalog(bytes.NewReader(catalogCSV), "gpu-functions-v100.csv")
	if err != nil {
		panic("workload: embedded catalog: " + err.Error()) // a build defect, covered by tests
	}
	return c
}

// ParseCatalog reads a catalog CSV (comment lines start with #).
func ParseCatalog(r io.Reader, file string) ([]CatalogEntry, error) {
	rows, err := readCSV(r, file)
	if err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("%s: no header", file)
	}
	h, err := header(file, rows[0], "name", "gpu_warm_s", "ctr_start_gpu_s")
	if err != nil {
		return nil, err
	}
	var out []CatalogEntry
	var colds []float64
	seen := map[string]bool{}
	for _, row := range rows[1:] {
		name := row.get(h["name"])
		if name == "" {
			return nil, row.errorf("empty name")
		}
		if seen[name] {
			return nil, row.errorf("duplicate function %q", name)
		}
		seen[name] = true
		warm, err := row.float(h["gpu_warm_s"], "gpu_warm_s", false)
		if err != nil {
			return nil, err
		}
		if warm <= 0 {
			return nil, row.errorf("gpu_warm_s %g must be positive", warm)
		}
		cold, err := row.float(h["ctr_start_gpu_s"], "ctr_start_gpu_s", true)
		if err != nil {
			return nil, err
		}
		if cold < 0 {
			return nil, row.errorf("ctr_start_gpu_s %g must not be negative", cold)
		}
		if cold > 0 {
			colds = append(colds, cold)
		}
		mem := int64(DefaultMemBytes)
		if name == "fft" {
			mem = fftMemBytes
		}
		out = append(out, CatalogEntry{Name: name, WarmSec: warm, ColdSec: cold, MemBytes: mem})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no functions", file)
	}
	med := 2.0
	if len(colds) > 0 {
		slices.Sort(colds)
		med = colds[len(colds)/2]
	}
	for i := range out {
		if out[i].ColdSec == 0 {
			out[i].ColdSec = med
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].WarmSec < out[j].WarmSec })
	return out, nil
}

// Match returns the catalog entry with the largest warm time not above
// warmSec, or the fastest entry if none fits (the paper's mapping). c must
// be sorted by warm time.
func Match(c []CatalogEntry, warmSec float64) CatalogEntry {
	best := c[0]
	for _, e := range c {
		if e.WarmSec <= warmSec {
			best = e
		}
	}
	return best
}

// ---- CSV helpers with file:line errors ----

type csvRow struct {
	file   string
	line   int
	fields []string
}

func (r csvRow) errorf(format string, args ...any) error {
	return fmt.Errorf("%s:%d: %s", r.file, r.line, fmt.Sprintf(format, args...))
}

func (r csvRow) get(i int) string {
	if i < 0 || i >= len(r.fields) {
		return ""
	}
	return strings.TrimSpace(r.fields[i])
}

func (r csvRow) float(i int, name string, optional bool) (float64, error) {
	s := r.get(i)
	if s == "" {
		if optional {
			return 0, nil
		}
		return 0, r.errorf("missing %s", name)
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v != v || v > 1e15 || v < -1e15 {
		return 0, r.errorf("%s: %q is not a number", name, s)
	}
	return v, nil
}

func readCSV(r io.Reader, file string) ([]csvRow, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.Comment = '#'
	cr.ReuseRecord = false
	var rows []csvRow
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return nil, fmt.Errorf("%s:%d: %v", file, pe.Line, pe.Err)
			}
			return nil, fmt.Errorf("read %s: %w", file, err)
		}
		line, _ := cr.FieldPos(0)
		rows = append(rows, csvRow{file: file, line: line, fields: rec})
	}
	if len(rows) > 0 {
		width := len(rows[0].fields)
		for _, row := range rows[1:] {
			if len(row.fields) != width {
				return nil, row.errorf("%d fields, header has %d", len(row.fields), width)
			}
		}
	}
	return rows, nil
}

// header maps column names to indexes and checks that want are present.
func header(file string, row csvRow, want ...string) (map[string]int, error) {
	h := map[string]int{}
	for i, f := range row.fields {
		h[strings.TrimSpace(f)] = i
	}
	for _, w := range want {
		if _, ok := h[w]; !ok {
			return nil, row.errorf("header lacks column %q", w)
		}
	}
	return h, nil
}
