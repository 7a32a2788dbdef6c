// Package version holds the build's version string, set by the Makefile.
package version

// Version is set at link time (-X); "dev" for plain go builds.
var Version = "dev"
