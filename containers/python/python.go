package python

import (
	_ "embed"
	"fmt"
	"os"
	"path/filepath"
)

// Source is runtime.py.
//
//go:embed runtime.py
var Source []byte

// WriteTo writes runtime.py into dir and returns its path.
func WriteTo(dir string) (string, error) {
	p := filepath.Join(dir, "sluice_runtime.py")
	if err := os.WriteFile(p, Source, 0o644); err != nil {
		return "", fmt.Errorf("write python runtime: %w", err)
	}
	return p, nil
}
