// Package runtimetest is the conformance suite for runtime.Runtime: every
// backend runs Run with a Fixture that starts the testfn program (in
// ./testfn) its own way. BuildTestFunction compiles testfn for fixtures.
package runtimetest
