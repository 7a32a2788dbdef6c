// Package image builds function images without a registry: it assembles a
// root filesystem as a tar stream (the function's binary plus the shared
// libraries it needs, or the host's python3 with its standard library and
// Sluice's Python runtime) and imports it into Docker with ImageImport,
// labelled so Sluice only ever lists and removes its own images.
package image
