// Package functions holds Sluice's example functions, one directory each
// with a function.json: echo (Go, the Sluice protocol), python-hello (the
// Python runtime), ow-echo (an OpenWhisk-protocol image) and gpu-matmul (the
// driver-API GPU program). This package's tests build and run every example
// on the Docker and process backends.
package functions
