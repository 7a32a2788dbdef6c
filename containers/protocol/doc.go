// Package protocol is Sluice's function protocol: both ends of it.
//
// A function's main process serves HTTP on a Unix socket that Sluice
// bind-mounts into its container (SocketPath inside, SLUICE_FN_SOCKET in the
// environment): GET /ready answers 200 once the function can take work, and
// POST /invoke takes a JSON request body and answers JSON. Errors are JSON
// objects {"error": "..."} with a 4xx status for bad input and 5xx for
// failures of the function. Serve turns a Go Handler into such a server.
//
// Client is Sluice's side. It speaks the Sluice protocol over a Unix socket,
// or Apache OpenWhisk's action protocol (POST /init once, then POST /run) over
// TCP, optionally dialled inside a container's network namespace so that the
// container itself needs no network.
package protocol
