// Package dockertest gives tests a client of the local Docker engine,
// applying the project's skip rule (internal/testenv): without an engine the
// test skips with one clear line, or fails under SLUICE_CI=1. It is test
// infrastructure, imported only by _test.go files.
package dockertest
