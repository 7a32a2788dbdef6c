// Package cgroups maps cgroup-v2 ids, as BPF programs see them
// (bpf_get_current_cgroup_id), to cgroup paths and to the containers that
// own them, by scanning the cgroup-v2 hierarchy: a cgroup's id is its
// directory's inode number. A cgroup can also be resolved through a process
// in it (/proc/PID/cgroup), the moment the process is seen.
//
// Container ids are found in the path the way the runtimes name their
// cgroups: Docker's /docker/<id> (cgroupfs driver) and
// system.slice/docker-<id>.scope (systemd driver), and the
// cri-containerd-, crio- and libpod- scopes of the other runtimes.
package cgroups
