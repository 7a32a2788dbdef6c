// Package spec reads and validates function.json, the file that describes one
// Sluice function: where its image comes from, how to start it, which protocol
// it speaks and which limits it runs under. Validation is strict: unknown
// fields and bad values are rejected with an error naming the field.
package spec
