// Package shimctl is the daemon side of the control channel to Sluice's
// CUDA shim (build/libsluice.so), the protocol of ../sluice_proto.h.
//
// Every shimmed CUDA process connects one SOCK_SEQPACKET Unix socket to the
// daemon and registers; a Server accepts those connections and turns each
// into a Session keyed by the peer's kernel-reported identity (SO_PEERCRED),
// never by what the shim claims. Through a Session the daemon prefetches the
// process's managed memory to the GPU, evicts it to the host, sets its memory
// budget and asks for usage; live usage is also readable at any time, without
// a message, from the shared page the shim passed at registration. A Session
// ends when its socket closes or its process exits (pidfd), whichever comes
// first; malformed input ends the offending session only.
package shimctl
