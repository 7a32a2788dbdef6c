// Package cgo holds the C boundary of Sluice: sluice_proto.h, the wire
// protocol between the CUDA shim (shim/, C) and the daemon. The daemon side
// of that protocol is the subpackage shimctl.
package cgo
